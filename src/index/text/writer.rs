//! The index writer, owned by the indexer thread: what one event adds to the index
//! (derived from the field table), commits, and deletions.

use super::*;

/// The index writer, owned by the indexer thread.
pub struct TextWriter {
    pub(super) writer: IndexWriter<TantivyDocument>,
    pub(super) shared: Arc<Shared>,
    pub(super) scratch: String,
    /// Tests: write [`MISSING`] for absent statistics values, as segments
    /// written before 2026-12-07 hold it (an index upgraded in place mixes both).
    #[cfg(test)]
    pub(super) missing_as_before: bool,
}

impl fmt::Debug for TextWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextWriter").finish_non_exhaustive()
    }
}

impl TextWriter {
    /// Adds one event (may block when tantivy's indexing queue is full: call it on the
    /// indexer's own thread, never on an async runtime thread).
    pub fn add(&mut self, ev: &StoredEvent) -> Result<(), TextError> {
        let f = &self.shared.fields;
        let e = &ev.event;
        let mut doc = TantivyDocument::new();
        doc.add_i64(f.time, event_time(ev));
        doc.add_u64(f.codes, pack_codes(e.severity, e.status, e.source));
        for (spec, handle) in event::FIELDS.iter().zip(f.rows) {
            let Some(handle) = handle else { continue };
            match (spec.get)(ev) {
                FieldValue::Absent => {}
                FieldValue::Str(s) => {
                    doc.add_text(handle, s);
                    if spec.indexed == Indexed::NamedKeyword {
                        doc.add_text(f.names_text, s);
                    }
                }
                FieldValue::Labels(labels) => {
                    for label in labels {
                        doc.add_text(handle, label);
                    }
                }
                FieldValue::U64(v) => doc.add_u64(handle, v),
                FieldValue::Time(t) => doc.add_i64(handle, t),
                FieldValue::Changes(changes) => {
                    // Each change as `field old new`, values as their JSON text.
                    for change in changes {
                        let s = &mut self.scratch;
                        s.clear();
                        s.push_str(&change.field);
                        s.push(' ');
                        s.push_str(change.old.as_deref().unwrap_or(""));
                        s.push(' ');
                        s.push_str(change.new.as_deref().unwrap_or(""));
                        doc.add_text(handle, s.as_str());
                    }
                }
                FieldValue::Json(text) => {
                    // Stored metadata is canonical JSON of an object: its values (never
                    // its key names) are bare words; anything else is only text.
                    match serde_json::from_str::<serde_json::Value>(text) {
                        Ok(value @ serde_json::Value::Object(_)) => {
                            json_values(&value, &mut |word| doc.add_text(f.metadata_text, word));
                            doc.add_field_value(handle, &value);
                        }
                        _ => doc.add_text(f.metadata_text, text),
                    }
                }
            }
        }
        // A statistics column holds a value only for the events that have one
        // (a third of the records the workload's events would make are absent
        // values); statistics count the absent as `total` minus what they counted.
        for (spec, column) in event::FIELDS.iter().zip(f.stat_columns) {
            let Some(column) = column else { continue };
            if let FieldValue::Str(value) = (spec.get)(ev) {
                doc.add_text(column, value);
            } else if self.writes_missing() {
                doc.add_text(column, MISSING);
            }
        }
        self.writer.add_document(doc).map_err(tantivy_err)?;
        Ok(())
    }

    fn writes_missing(&self) -> bool {
        #[cfg(test)]
        return self.missing_as_before;
        #[cfg(not(test))]
        false
    }

    /// Commits everything added (and deleted) with `last_seq` in the commit payload, then
    /// reloads the reader so that searches see it.
    pub fn commit(&mut self, last_seq: u64) -> Result<(), TextError> {
        let mut prepared = self.writer.prepare_commit().map_err(tantivy_err)?;
        prepared.set_payload(&format!("{PAYLOAD_PREFIX}{last_seq}"));
        prepared.commit().map_err(tantivy_err)?;
        // Reload before publishing the seq, so that whoever sees the new committed seq
        // also finds its documents.
        let reloaded = self.shared.reader.reload();
        *self
            .shared
            .committed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(last_seq);
        reloaded.map_err(tantivy_err)
    }

    /// Deletes every document with a seq below `below` (retention), at the
    /// next commit.
    pub fn delete_below(&mut self, below: u64) -> Result<(), TextError> {
        let query = RangeQuery::new(
            Bound::Unbounded,
            Bound::Excluded(Term::from_field_u64(self.shared.fields.seq, below)),
        );
        self.writer
            .delete_query(Box::new(query))
            .map_err(tantivy_err)?;
        Ok(())
    }
}

/// Calls `each` with every scalar value of `value` (strings as they are, numbers and
/// booleans as their JSON text): the values of `metadata_text`, one text value each
/// (so that a phrase never spans two of them). Key names are left out, so that a plain
/// word never matches a metadata key.
fn json_values(value: &serde_json::Value, each: &mut impl FnMut(&str)) {
    use serde_json::Value;
    match value {
        Value::Null => {}
        Value::Bool(b) => each(if *b { "true" } else { "false" }),
        Value::Number(n) => each(&n.to_string()),
        Value::String(s) => each(s),
        Value::Array(items) => items.iter().for_each(|v| json_values(v, each)),
        Value::Object(map) => map.values().for_each(|v| json_values(v, each)),
    }
}
