//! The engine: answers listings, searches, lookups and statistics from the
//! indexes (which return seqs) and the log (which has the events).

use super::cursor::Route;
use super::rendered::{RenderCache, Rendered, RenderedStats, RENDERED_BYTES_MAX};
use super::{
    bad, CursorCodec, Filter, Order, Paging, Position, Query, QueryError, Sort, LIMIT_MAX,
    TOP_USERS,
};
use crate::clock::Clock;
use crate::event::StoredEvent;
use crate::index::text::{Stats, StatsAnswer, StatsRequest};
use crate::index::Indexes;
use crate::log::Log;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// At most this many candidates of one `(id, tenant)` are read from the log
/// to answer a lookup by id. Keys are per event and ids are unique per
/// tenant (ingest is idempotent), so there is one candidate, or two on a
/// 64-bit fingerprint collision; the bound keeps a damaged index from
/// turning one lookup into a scan.
pub const ID_CANDIDATES_MAX: usize = 16;

/// One page of events. Fields in byte order of their names: answers are
/// written straight from it, as a `serde_json::Value` (a sorted map) wrote them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PageOf<E> {
    /// The events, in the page's order.
    pub events: Vec<E>,
    /// Why an empty first page may be empty when the caller expected events
    /// (a tenant that exists in another letter case); omitted when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
    /// Continues the listing; `None` at the end.
    pub next_cursor: Option<String>,
    /// The number of matches of the whole listing, when asked for (`total=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// A page of decoded events.
pub type Page = PageOf<StoredEvent>;

/// A page of events as answers write them (the listing routes' pages,
/// [`Engine::list_as`] with [`Rendered`]).
pub type RenderedPage = PageOf<Rendered>;

/// An event of a page, as the caller wants it: decoded ([`StoredEvent`]) or
/// as answers write it ([`Rendered`]).
pub trait PageEvent: Sized {
    /// Where a cursor after it continues.
    fn position(&self) -> Position;

    /// The events of `seqs`, in that order, without those not (or no
    /// longer) in the log.
    fn fetch(engine: &Engine, seqs: &[u64]) -> Result<Vec<Self>, QueryError>;
}

impl PageEvent for StoredEvent {
    fn position(&self) -> Position {
        Position::of(self)
    }

    fn fetch(engine: &Engine, seqs: &[u64]) -> Result<Vec<Self>, QueryError> {
        Ok(engine.log.get_many(seqs)?)
    }
}

impl PageEvent for Rendered {
    fn position(&self) -> Position {
        Rendered::position(self)
    }

    fn fetch(engine: &Engine, seqs: &[u64]) -> Result<Vec<Self>, QueryError> {
        engine.fetch_rendered(seqs)
    }
}

/// Where a page's time went on the server (`Server-Timing` of the listing
/// routes), filled by [`Engine::list_paged_staged`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stages {
    /// Finding the page's seqs in the text index.
    pub search: Duration,
    /// Reading and decoding the page's events from the log.
    pub fetch: Duration,
    /// Counting the whole listing (`total=true`).
    pub count: Duration,
}

/// Answers queries from the indexes and the log.
pub struct Engine {
    log: Arc<Log>,
    indexes: Arc<Indexes>,
    clock: Arc<dyn Clock>,
    cursors: CursorCodec,
    /// With `[archive]`: what the archive reports; its cache reads this
    /// log's evicted segments (opened with the log, before the indexes
    /// catch up, which may need them).
    archive: Option<Arc<crate::archive::ArchiveStatus>>,
    /// The JSON of events pages answered with (`rendered`).
    rendered: RenderCache,
}

impl Engine {
    /// An engine over `log` and its `indexes`; `key` authenticates cursors.
    pub fn new(
        log: Arc<Log>,
        indexes: Arc<Indexes>,
        clock: Arc<dyn Clock>,
        key: [u8; 32],
    ) -> Engine {
        Engine {
            log,
            indexes,
            clock,
            cursors: CursorCodec::new(key),
            archive: None,
            rendered: RenderCache::new(RENDERED_BYTES_MAX),
        }
    }

    /// This engine with the archive's status (see the field).
    pub fn with_archive(mut self, status: Arc<crate::archive::ArchiveStatus>) -> Engine {
        self.archive = Some(status);
        self
    }

    /// The archive's status, when `[archive]` reads this log's evicted segments.
    pub fn archive(&self) -> Option<&Arc<crate::archive::ArchiveStatus>> {
        self.archive.as_ref()
    }

    /// The log.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// The indexes.
    pub fn indexes(&self) -> &Arc<Indexes> {
        &self.indexes
    }

    /// The renderings of the events of `seqs`, in that order, without those
    /// not (or no longer) in the log: kept ones, the others read from the log
    /// (and kept).
    fn fetch_rendered(&self, seqs: &[u64]) -> Result<Vec<Rendered>, QueryError> {
        let first = self.log.first_seq();
        // Events of evicted segments are read through the archive every
        // time (its cache, its checks, its failures named), never kept.
        let local = self.log.evicted_below();
        let mut kept = self.rendered.get_many(seqs, local);
        let missing: Vec<u64> = seqs
            .iter()
            .zip(&kept)
            .filter(|(_, r)| r.is_none())
            .map(|(seq, _)| *seq)
            .collect();
        let mut fresh = Vec::with_capacity(missing.len());
        for ev in self.log.get_many(&missing)? {
            let r = Rendered::of(&ev).map_err(|e| QueryError::Render(e.to_string()))?;
            fresh.push(r);
        }
        self.rendered.put_many(&fresh, local);
        // `get_many` leaves out what the log no longer has, in order.
        let mut fresh = fresh.into_iter().peekable();
        let mut out = Vec::with_capacity(seqs.len());
        for (seq, r) in seqs.iter().zip(kept.iter_mut()) {
            match r.take() {
                // Dropped by retention since the search: as the log would.
                Some(r) if *seq < first => drop(r),
                Some(r) => out.push(r),
                None => {
                    if let Some(f) = fresh.next_if(|f| f.position().seq == *seq) {
                        out.push(f);
                    }
                }
            }
        }
        Ok(out)
    }

    /// What the cache of rendered events holds and did.
    pub fn rendered_stats(&self) -> RenderedStats {
        self.rendered.stats()
    }

    /// A page of the events of the first `limit` of `seqs`.
    fn page<E: PageEvent>(
        &self,
        seqs: Vec<u64>,
        limit: usize,
        fp: [u8; 8],
    ) -> Result<PageOf<E>, QueryError> {
        // One more than asked tells whether there is a next page.
        let more = seqs.len() > limit;
        let seqs = &seqs[..seqs.len().min(limit)];
        let events = E::fetch(self, seqs)?;
        let next_cursor = match (more, events.last()) {
            (true, Some(last)) => Some(self.cursors.encode(fp, last.position())),
            _ => None,
        };
        Ok(PageOf {
            events,
            next_cursor,
            hints: Vec::new(),
            total: None,
        })
    }

    /// Up to `limit` seqs of `filter`'s matches after `after` in `sort` and
    /// `order`, none dropped by retention.
    fn ordered(
        &self,
        filter: &Filter,
        sort: Sort,
        order: Order,
        limit: usize,
        after: Option<Position>,
    ) -> Result<Vec<u64>, QueryError> {
        // Until the indexes commit a retention drop (≤ one commit interval)
        // they still hold the dropped seqs: skip them, so pages stay full.
        let first = self.log.first_seq();
        match sort {
            Sort::Time => Ok(self
                .indexes
                .text
                .search_by_time(filter, order, limit, after, first)?
                .into_iter()
                .map(|p| p.seq)
                .collect()),
            Sort::Seq => {
                let after = after.map(|p| p.seq);
                let after = match order {
                    Order::Asc if first > 1 => Some(after.map_or(first - 1, |a| a.max(first - 1))),
                    _ => after,
                };
                let mut seqs = self.indexes.text.search(filter, order, limit, after)?;
                seqs.retain(|&s| s >= first);
                Ok(seqs)
            }
        }
    }

    /// A filtered listing (with `q`, a full-text search), in `query.sort`
    /// and `query.order`.
    pub fn list(&self, query: &Query) -> Result<Page, QueryError> {
        self.list_paged(query, &Paging::default())
    }

    /// A filtered listing starting `paging`'s offset (or page) into the
    /// matches, or after the query's cursor; with the total when asked for.
    /// An offset page's `next_cursor` continues after its last event, so a
    /// page-number UI can switch to cursors at any page.
    pub fn list_paged(&self, query: &Query, paging: &Paging) -> Result<Page, QueryError> {
        self.list_paged_staged(query, paging, &mut Stages::default())
    }

    /// [`Engine::list_paged`], saying in `stages` where the time went.
    pub fn list_paged_staged(
        &self,
        query: &Query,
        paging: &Paging,
        stages: &mut Stages,
    ) -> Result<Page, QueryError> {
        self.list_as(query, paging, stages)
    }

    /// [`Engine::list_paged_staged`] of events as `E` (with [`Rendered`], as
    /// answers write them: the ones a page answered with before are not read
    /// from the log again).
    pub fn list_as<E: PageEvent>(
        &self,
        query: &Query,
        paging: &Paging,
        stages: &mut Stages,
    ) -> Result<PageOf<E>, QueryError> {
        let skip = paging.skip(query)?;
        let mut page = if skip > 0 {
            let fp =
                super::cursor::fingerprint(Route::List, &query.filter, query.sort, query.order);
            let started = Instant::now();
            let mut seqs = self.ordered(
                &query.filter,
                query.sort,
                query.order,
                skip + query.limit + 1,
                None,
            )?;
            seqs.drain(..skip.min(seqs.len()));
            stages.search += started.elapsed();
            let started = Instant::now();
            let page = self.page(seqs, query.limit, fp)?;
            stages.fetch += started.elapsed();
            page
        } else {
            self.list_after_cursor(query, stages)?
        };
        if paging.total {
            let started = Instant::now();
            page.total = Some(self.count(&query.filter)?);
            stages.count += started.elapsed();
        }
        Ok(page)
    }

    fn list_after_cursor<E: PageEvent>(
        &self,
        query: &Query,
        stages: &mut Stages,
    ) -> Result<PageOf<E>, QueryError> {
        let fp = super::cursor::fingerprint(Route::List, &query.filter, query.sort, query.order);
        let after = match &query.cursor {
            Some(c) => Some(self.cursors.decode(c, fp)?),
            None => None,
        };
        if let Some(a) = after {
            // In seq order a cursor continues right after `a`: the next seq it
            // needs (a - 1 newest-first, a + 1 oldest-first) must still exist.
            // In time order the cursor's own event must: once retention
            // dropped it, events the walk had not reached may be gone too.
            let first = self.log.first_seq();
            let needs = match (query.sort, query.order) {
                (Sort::Time, _) => a.seq,
                (Sort::Seq, Order::Desc) => a.seq.saturating_sub(1),
                (Sort::Seq, Order::Asc) => a.seq + 1,
            };
            let at_the_end = query.sort == Sort::Seq && query.order == Order::Desc && a.seq <= 1;
            if needs < first && !at_the_end {
                return Err(QueryError::Gone {
                    what: "the cursor".into(),
                    first_seq: first,
                });
            }
        }
        let started = Instant::now();
        let seqs = self.ordered(
            &query.filter,
            query.sort,
            query.order,
            query.limit + 1,
            after,
        )?;
        stages.search += started.elapsed();
        let started = Instant::now();
        let mut page = self.page(seqs, query.limit, fp)?;
        stages.fetch += started.elapsed();
        if page.events.is_empty() && after.is_none() {
            let started = Instant::now();
            page.hints = self.hints(&query.filter)?;
            stages.search += started.elapsed();
        }
        Ok(page)
    }

    /// What may explain that `filter` matched nothing: keyword filters ignore
    /// letter case, but a tenant is exact.
    fn hints(&self, filter: &Filter) -> Result<Vec<String>, QueryError> {
        let Some(tenant) = &filter.tenant else {
            return Ok(Vec::new());
        };
        let mut like = self.indexes.text.tenants_like(tenant, 5)?;
        // A key scoped to some tenants learns nothing about the others.
        if let Some(scope) = &filter.tenants {
            like.retain(|t| scope.contains(t));
        }
        if like.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![format!(
            "no event has the tenant {tenant:?}; tenants are exact, letter case included, \
             and events exist in {}",
            like.iter()
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )])
    }

    /// Up to `limit` seqs after `after` matching `filter` (full text
    /// included), oldest first: how a stream with `q` follows the text
    /// index. Commits add seqs in order, so repeating the call with the last
    /// seq seen never skips one.
    pub fn matching_after(
        &self,
        filter: &Filter,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, QueryError> {
        Ok(self.indexes.text.search(filter, Order::Asc, limit, after)?)
    }

    /// Number of events matching the filter (with `q`: the full-text hits),
    /// without the ones retention dropped and the index still holds: what a
    /// walk of the listing returns. Counts only, no statistics.
    pub fn count(&self, filter: &Filter) -> Result<u64, QueryError> {
        Ok(self.indexes.text.count_from(filter, self.log.first_seq())?)
    }

    /// The event with this id in `tenant` (`None`: among the events without a
    /// tenant). Ids are unique per tenant, not across tenants.
    /// The key index gives candidates (ascending seqs whose fingerprints match); the
    /// first one the log confirms is the answer.
    pub fn get_by_id(
        &self,
        id: &str,
        tenant: Option<&str>,
    ) -> Result<Option<StoredEvent>, QueryError> {
        for seq in self.indexes.kv.seqs_of_id(id, tenant, ID_CANDIDATES_MAX)? {
            if let Some(ev) = self.get_checked(seq, id, tenant)? {
                return Ok(Some(ev));
            }
        }
        Ok(None)
    }

    /// The event at `seq`, if it is the one with `id` in `tenant` (an index
    /// entry never answers for another event).
    pub fn get_checked(
        &self,
        seq: u64,
        id: &str,
        tenant: Option<&str>,
    ) -> Result<Option<StoredEvent>, QueryError> {
        Ok(self
            .log
            .get(seq)?
            .filter(|e| e.event.id == id && e.event.tenant.as_deref() == tenant))
    }

    /// The events with this id, the lowest seq in each tenant that holds one
    /// (`None`: the events without a tenant), at most `max` of them, in tenant
    /// order (no tenant first): one range scan of the key index, then a read of
    /// each candidate to confirm it and learn its tenant (the read is the answer:
    /// nothing is read twice).
    pub fn events_of_id(&self, id: &str, max: usize) -> Result<Vec<StoredEvent>, QueryError> {
        let mut found: std::collections::BTreeMap<Option<String>, StoredEvent> = Default::default();
        let candidates = max.saturating_add(ID_CANDIDATES_MAX);
        for seq in self.indexes.kv.seqs_of_id_any_tenant(id, candidates)? {
            if let Some(ev) = self.log.get(seq)?.filter(|e| e.event.id == id) {
                match found.entry(ev.event.tenant.clone()) {
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(ev);
                    }
                    std::collections::btree_map::Entry::Occupied(mut o) => {
                        if ev.seq < o.get().seq {
                            o.insert(ev);
                        }
                    }
                }
            }
        }
        Ok(found.into_values().take(max).collect())
    }

    fn keyed<E: PageEvent>(
        &self,
        route: Route<'_>,
        filter: Filter,
        query: &Query,
    ) -> Result<PageOf<E>, QueryError> {
        if !(1..=LIMIT_MAX).contains(&query.limit) {
            return Err(bad(
                "limit",
                format!("must be a whole number from 1 to {LIMIT_MAX}"),
            ));
        }
        let fp = super::cursor::fingerprint(route, &filter, query.sort, query.order);
        let after = match &query.cursor {
            Some(c) => Some(self.cursors.decode(c, fp)?),
            None => None,
        };
        let seqs = self.ordered(&filter, query.sort, query.order, query.limit + 1, after)?;
        self.page(seqs, query.limit, fp)
    }

    /// The events about one entity that match `query` (its filters, sort,
    /// order, limit and cursor; the routes default to oldest first), the
    /// entity named by the path rather than by `entity_type`/`entity_id`
    /// filters.
    pub fn entity_history(
        &self,
        query: &Query,
        entity_type: &str,
        entity_id: &str,
    ) -> Result<Page, QueryError> {
        self.entity_history_as(query, entity_type, entity_id)
    }

    /// [`Engine::entity_history`] of events as `E`.
    pub fn entity_history_as<E: PageEvent>(
        &self,
        query: &Query,
        entity_type: &str,
        entity_id: &str,
    ) -> Result<PageOf<E>, QueryError> {
        let filter = Filter {
            entity_type: Some(entity_type.into()),
            entity_id: Some(entity_id.into()),
            ..query.filter.clone()
        };
        self.keyed(Route::Entity(entity_type, entity_id), filter, query)
    }

    /// What one user did that matches `query` (the routes default to newest
    /// first), the user named by the path rather than a `user_id` filter.
    pub fn user_timeline(&self, query: &Query, user_id: &str) -> Result<Page, QueryError> {
        self.user_timeline_as(query, user_id)
    }

    /// [`Engine::user_timeline`] of events as `E`.
    pub fn user_timeline_as<E: PageEvent>(
        &self,
        query: &Query,
        user_id: &str,
    ) -> Result<PageOf<E>, QueryError> {
        let filter = Filter {
            user_id: Some(user_id.into()),
            ..query.filter.clone()
        };
        self.keyed(Route::User(user_id), filter, query)
    }

    /// Statistics of the events matching the filter: the full object, with
    /// `top_users` cut at [`TOP_USERS`] and the other lists complete.
    pub fn stats(&self, query: &Query) -> Result<Stats, QueryError> {
        self.full_stats(query, None)
    }

    /// The full statistics object; `top` cuts every list (`None`: `top_users`
    /// at [`TOP_USERS`], the others complete).
    pub fn full_stats(&self, query: &Query, top: Option<usize>) -> Result<Stats, QueryError> {
        Ok(self.indexes.text.full_stats(
            &query.filter,
            self.clock.now_micros(),
            query.interval.micros(),
            (top.unwrap_or(usize::MAX), top.unwrap_or(TOP_USERS)),
            self.log.first_seq(),
        )?)
    }

    /// Only the statistics `request` asks for (groups, histogram, last 24 h,
    /// rates) of the events matching `filter`: a facet is one group.
    pub fn stats_of(
        &self,
        filter: &Filter,
        request: &StatsRequest,
    ) -> Result<StatsAnswer, QueryError> {
        Ok(self
            .indexes
            .text
            .stats_of(filter, request, self.log.first_seq())?)
    }

    /// The clock's now (unix µs), which anchors `last_24h`.
    pub fn now_micros(&self) -> i64 {
        self.clock.now_micros()
    }
}
