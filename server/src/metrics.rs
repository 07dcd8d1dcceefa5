//! Counters for `/metrics`, in Prometheus' text format. A handful of fixed series, so plain
//! atomics and a hand-written exposition are enough.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nightscape_core::wire::Topic;

#[derive(Debug, Default)]
pub struct Metrics {
    http: [AtomicU64; 5],
    received: [AtomicU64; 7],
    published: [AtomicU64; 2],
    rejected: [AtomicU64; 4],
    login_failures: AtomicU64,
    broker_connected: AtomicBool,
}

const REJECT_REASONS: [&str; 4] = ["malformed", "impostor", "topic", "store"];

fn topic_index(t: Topic) -> usize {
    Topic::ALL.iter().position(|x| *x == t).unwrap_or(0)
}

impl Metrics {
    pub fn http(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.http[class].fetch_add(1, Ordering::Relaxed);
    }

    pub fn received(&self, t: Topic) {
        self.received[topic_index(t)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn published(&self, t: Topic) {
        let i = usize::from(t != Topic::Plan);
        self.published[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected(&self, reason: &str) {
        let i = REJECT_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(3);
        self.rejected[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected_count(&self, reason: &str) -> u64 {
        REJECT_REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.rejected[i].load(Ordering::Relaxed))
    }

    pub fn login_failed(&self) {
        self.login_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn broker_connected(&self, up: bool) {
        self.broker_connected.store(up, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.push_str("# HELP nightscape_http_responses_total HTTP responses by status class.\n# TYPE nightscape_http_responses_total counter\n");
        for (i, c) in self.http.iter().enumerate() {
            let _ = writeln!(
                out,
                "nightscape_http_responses_total{{class=\"{}xx\"}} {}",
                i + 1,
                get(c)
            );
        }
        out.push_str("# HELP nightscape_mqtt_received_total Gateway messages received by topic.\n# TYPE nightscape_mqtt_received_total counter\n");
        for (t, c) in Topic::ALL.iter().zip(&self.received) {
            let _ = writeln!(
                out,
                "nightscape_mqtt_received_total{{topic=\"{t}\"}} {}",
                get(c)
            );
        }
        out.push_str("# HELP nightscape_documents_published_total Documents the broker acknowledged.\n# TYPE nightscape_documents_published_total counter\n");
        for (name, c) in ["plan", "overrides"].iter().zip(&self.published) {
            let _ = writeln!(
                out,
                "nightscape_documents_published_total{{kind=\"{name}\"}} {}",
                get(c)
            );
        }
        out.push_str("# HELP nightscape_mqtt_rejected_total Gateway messages refused, by reason.\n# TYPE nightscape_mqtt_rejected_total counter\n");
        for (name, c) in REJECT_REASONS.iter().zip(&self.rejected) {
            let _ = writeln!(
                out,
                "nightscape_mqtt_rejected_total{{reason=\"{name}\"}} {}",
                get(c)
            );
        }
        out.push_str("# HELP nightscape_login_failures_total Failed or rate-limited logins.\n# TYPE nightscape_login_failures_total counter\n");
        let _ = writeln!(
            out,
            "nightscape_login_failures_total {}",
            get(&self.login_failures)
        );
        out.push_str("# HELP nightscape_broker_connected Whether the server is connected to the MQTT broker.\n# TYPE nightscape_broker_connected gauge\n");
        let _ = writeln!(
            out,
            "nightscape_broker_connected {}",
            u8::from(self.broker_connected.load(Ordering::Relaxed))
        );
        out
    }
}
