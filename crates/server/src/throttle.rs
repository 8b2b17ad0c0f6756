//! Failed-login throttling, per account and per client address. LoopBack 3 has none; a
//! caller past the limit gets 429 with `Retry-After` until the window has passed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Limits from `server/config.json` → `loginRateLimit` (`account`, `address`, `window`).
#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    /// Failed logins allowed per account within the window.
    pub per_account: u32,
    /// Failed logins allowed per client address within the window.
    pub per_address: u32,
    pub window: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            per_account: 10,
            per_address: 100,
            window: Duration::from_secs(15 * 60),
        }
    }
}

impl ThrottleConfig {
    pub fn from_config(raw: &serde_json::Map<String, Value>) -> Self {
        let mut c = Self::default();
        if let Some(Value::Object(o)) = raw.get("loginRateLimit") {
            let n = |k: &str| o.get(k).and_then(Value::as_u64);
            if let Some(v) = n("account") {
                c.per_account = u32::try_from(v).unwrap_or(u32::MAX);
            }
            if let Some(v) = n("address") {
                c.per_address = u32::try_from(v).unwrap_or(u32::MAX);
            }
            if let Some(v) = n("window") {
                c.window = Duration::from_secs(v.max(1));
            }
        }
        c
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Counts failures in fixed windows. Memory is bounded: expired windows are swept when
/// the table grows.
pub struct LoginThrottle {
    config: ThrottleConfig,
    accounts: Mutex<HashMap<String, Window>>,
    addresses: Mutex<HashMap<String, Window>>,
}

const SWEEP_AT: usize = 50_000;

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            accounts: Mutex::new(HashMap::new()),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(seconds to wait)` when either key is over its limit.
    pub fn blocked(&self, account: &str, address: &str) -> Option<u64> {
        let now = Instant::now();
        let a = Self::wait(
            &self.accounts,
            account,
            self.config.per_account,
            self.config.window,
            now,
        );
        let b = Self::wait(
            &self.addresses,
            address,
            self.config.per_address,
            self.config.window,
            now,
        );
        a.max(b)
    }

    fn wait(
        table: &Mutex<HashMap<String, Window>>,
        key: &str,
        limit: u32,
        window: Duration,
        now: Instant,
    ) -> Option<u64> {
        let table = table.lock().ok()?;
        let w = table.get(key)?;
        let elapsed = now.duration_since(w.started);
        if elapsed >= window || w.failures < limit {
            return None;
        }
        Some((window - elapsed).as_secs().max(1))
    }

    pub fn failed(&self, account: &str, address: &str) {
        let now = Instant::now();
        for (table, key) in [(&self.accounts, account), (&self.addresses, address)] {
            if let Ok(mut t) = table.lock() {
                if t.len() >= SWEEP_AT {
                    let window = self.config.window;
                    t.retain(|_, w| now.duration_since(w.started) < window);
                }
                let w = t.entry(key.to_string()).or_insert(Window {
                    started: now,
                    failures: 0,
                });
                if now.duration_since(w.started) >= self.config.window {
                    *w = Window {
                        started: now,
                        failures: 0,
                    };
                }
                w.failures += 1;
            }
        }
    }

    /// A successful login clears the account's failures (not the address's).
    pub fn succeeded(&self, account: &str) {
        if let Ok(mut t) = self.accounts.lock() {
            t.remove(account);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_success_resets_the_account() {
        let t = LoginThrottle::new(ThrottleConfig {
            per_account: 2,
            per_address: 3,
            window: Duration::from_secs(60),
        });
        assert_eq!(t.blocked("a", "ip"), None);
        t.failed("a", "ip");
        assert_eq!(t.blocked("a", "ip"), None);
        t.failed("a", "ip");
        assert!(t.blocked("a", "ip").is_some());
        assert!(t.blocked("b", "ip2").is_none());
        t.succeeded("a");
        assert_eq!(t.blocked("a", "ip2"), None);
        t.failed("c", "ip");
        assert!(
            t.blocked("d", "ip").is_some(),
            "the address is over its limit"
        );
    }
}
