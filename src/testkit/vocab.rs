//! The vocabulary [`EventGen`](super::EventGen) draws from: real log lines for
//! descriptions, and the names, actions and entities of a SaaS product.

use std::sync::OnceLock;

/// The real log samples used for descriptions: 300 lines from each of 16 systems.
pub(super) const CORPUS: &[&str] = &[
    include_str!("../../tests/corpus/loghub/Android_2k.log"),
    include_str!("../../tests/corpus/loghub/Apache_2k.log"),
    include_str!("../../tests/corpus/loghub/BGL_2k.log"),
    include_str!("../../tests/corpus/loghub/HDFS_2k.log"),
    include_str!("../../tests/corpus/loghub/HPC_2k.log"),
    include_str!("../../tests/corpus/loghub/Hadoop_2k.log"),
    include_str!("../../tests/corpus/loghub/HealthApp_2k.log"),
    include_str!("../../tests/corpus/loghub/Linux_2k.log"),
    include_str!("../../tests/corpus/loghub/Mac_2k.log"),
    include_str!("../../tests/corpus/loghub/OpenSSH_2k.log"),
    include_str!("../../tests/corpus/loghub/OpenStack_2k.log"),
    include_str!("../../tests/corpus/loghub/Proxifier_2k.log"),
    include_str!("../../tests/corpus/loghub/Spark_2k.log"),
    include_str!("../../tests/corpus/loghub/Thunderbird_2k.log"),
    include_str!("../../tests/corpus/loghub/Windows_2k.log"),
    include_str!("../../tests/corpus/loghub/Zookeeper_2k.log"),
];

/// Every non-empty line of the corpus (line endings stripped), split on first use.
pub fn corpus_lines() -> &'static [&'static str] {
    static LINES: OnceLock<Vec<&'static str>> = OnceLock::new();
    LINES.get_or_init(|| {
        CORPUS
            .iter()
            .flat_map(|file| file.lines())
            .map(str::trim_end)
            .filter(|line| !line.is_empty())
            .collect()
    })
}

pub(super) const TENANTS: &[&str] = &[
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "wonka",
    "soylent",
    "cyberdyne",
    "tyrell",
    "vandelay",
];

pub(super) const FIRST_NAMES: &[&str] = &[
    "Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory",
    "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Yuki", "Zoë",
    "José", "Amélie", "Søren",
];

pub(super) const LAST_NAMES: &[&str] = &[
    "Smith", "Johnson", "Garcia", "Müller", "Kowalski", "Nguyen", "Okafor", "Rossi", "Tanaka",
    "Dubois", "Silva", "Larsen", "O'Brien", "Novak", "Haddad", "Ivanova",
];

/// Action names with their relative frequency.
pub(super) const ACTIONS: &[(&str, u32)] = &[
    ("view", 28),
    ("update", 18),
    ("create", 12),
    ("login", 10),
    ("logout", 6),
    ("login_failed", 4),
    ("delete", 4),
    ("export", 3),
    ("approve", 3),
    ("share", 2),
    ("download", 3),
    ("permission_change", 2),
    ("password_reset", 2),
    ("mfa_enroll", 1),
    ("api_key_create", 1),
    ("api_key_revoke", 1),
];

pub(super) const ENTITY_TYPES: &[&str] = &[
    "order",
    "invoice",
    "user",
    "document",
    "project",
    "customer",
    "subscription",
    "payment",
    "report",
    "ticket",
    "dashboard",
];

pub(super) const DOCUMENTS: &[&str] = &[
    "Q3 Board Deck.pdf",
    "Employee Handbook 2026.docx",
    "Vendor Contract - Globex.pdf",
    "Roadmap H2.xlsx",
    "Incident Postmortem 2026-03-14.md",
    "Pricing Sheet (EU).csv",
    "Security Policy v4.pdf",
];

pub(super) const PROJECTS: &[&str] = &[
    "Apollo",
    "Billing Revamp",
    "Data Lake Migration",
    "Mobile App v3",
    "SOC 2 Readiness",
    "Website Redesign",
];

pub(super) const COMPANIES: &[&str] = &[
    "Northwind Traders",
    "Contoso Ltd",
    "Fabrikam Inc",
    "Adventure Works",
    "Tailspin Toys",
    "Litware GmbH",
];

pub(super) const SERVICES: &[&str] = &[
    "svc:billing-worker",
    "svc:search-indexer",
    "svc:notifications",
    "svc:provisioning",
    "svc:fraud-detector",
];

pub(super) const INTEGRATIONS: &[&str] = &[
    "integration:stripe",
    "integration:salesforce",
    "integration:okta-scim",
    "integration:slack",
    "integration:zapier",
    "integration:github",
];

pub(super) const SCHEDULES: &[&str] = &[
    "cron:nightly-export",
    "cron:invoice-reminders",
    "cron:retention-purge",
    "cron:usage-rollup",
];

pub(super) const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
    "curl/8.10.1",
    "AcmeMobile/5.4.1 (iOS 18.1; iPhone15,2)",
];

pub(super) const REGIONS: &[&str] = &[
    "eu-west-1",
    "eu-central-1",
    "us-east-1",
    "us-west-2",
    "ap-southeast-2",
];

pub(super) const ROLES: &[&str] = &[
    "viewer",
    "member",
    "editor",
    "billing_admin",
    "admin",
    "owner",
];

pub(super) const ORDER_STATES: &[&str] = &[
    "draft",
    "pending",
    "paid",
    "shipped",
    "delivered",
    "canceled",
    "refunded",
];

pub(super) const CITIES: &[(&str, &str)] = &[
    ("Berlin", "10115"),
    ("Lisbon", "1100-148"),
    ("Austin", "73301"),
    ("Osaka", "530-0001"),
    ("Nairobi", "00100"),
];
