//! `ml_generate`: makes up labelled payment events for a set of customers, the first step of the
//! example training pipeline (`dags/ml_training.toml`).
//!
//! Like a fraud-detection company that trains models for thousands of customers, each customer here
//! has its own traffic (typical amounts, share of foreign cards, payment methods) and its own hidden
//! fraud rule: a per-customer variation of a shared rule ("big amounts, new accounts, night time,
//! foreign cards and crypto are risky"), plus noise. A model can learn most of it, not all of it.
//!
//! Params (all optional):
//!
//! | param | default | meaning |
//! |---|---|---|
//! | `customers` | `["acme", "globex", "initech"]` | customer names, or a count `n` (names `customer_001` …) |
//! | `events_per_customer` | `200` | events made for each customer |
//! | `seed` | `1` | the seed: the same settings always give the same events |
//! | `fraud_rate` | `0.1` | the average share of fraud (each customer's own rate varies around it) |
//!
//! `conf.customers` and `conf.seed`, when the run was triggered with them, override the params: an
//! ad-hoc experiment on other customers needs no DAG edit.
//!
//! Output: `{customers: [names], seed, events: [{id, customer, amount, hour, account_age_days,
//! n_items, is_foreign, payment, fraud}]}`. A customer's events depend only on its name, the seed,
//! `events_per_customer` and `fraud_rate`, not on which other customers are in the list.

use sandflow_sdk::{json, Context, TaskResult, Value};
use serde::{Deserialize, Serialize};

/// The most events one run may make: keeps the output (about 150 bytes an event) under the host's
/// default 1 MiB output limit.
pub const MAX_EVENTS: usize = 5000;

/// The customers used when neither params nor conf name any.
pub const DEFAULT_CUSTOMERS: [&str; 3] = ["acme", "globex", "initech"];

/// splitmix64: a tiny, good-enough deterministic generator (the same as `logreg`'s).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly normal (sum of uniforms), mean 0, variance 1.
    pub fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
    }
}

/// FNV-1a, 64 bits: a stable hash of a name (Rust's `DefaultHasher` may change between releases).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// What to generate, after params and conf are merged and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub customers: Vec<String>,
    pub events_per_customer: usize,
    pub seed: u64,
    pub fraud_rate: f64,
}

/// One payment event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `<customer>-<number>`: unique, and stable across runs with the same settings.
    pub id: String,
    pub customer: String,
    /// In dollars, rounded to cents.
    pub amount: f64,
    /// Hour of day, 0–23 (UTC).
    pub hour: u32,
    pub account_age_days: u32,
    pub n_items: u32,
    /// 1 when the card was issued abroad.
    pub is_foreign: u8,
    /// `card`, `paypal` or `crypto`.
    pub payment: String,
    /// The label: 1 for fraud.
    pub fraud: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    customers: Option<Value>,
    #[serde(default = "default_events")]
    events_per_customer: u64,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default = "default_fraud_rate")]
    fraud_rate: f64,
}

fn default_events() -> u64 {
    200
}

fn default_fraud_rate() -> f64 {
    0.1
}

/// Reads `customers` (a list of names or a count); `place` names it in messages.
fn customers(value: &Value, place: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = match value {
        Value::Number(n) => {
            let count = n
                .as_u64()
                .filter(|&c| c >= 1)
                .ok_or_else(|| format!("{place}: a count of customers must be an integer of at least 1, got {n}"))?;
            if count as usize > MAX_EVENTS {
                return Err(format!("{place}: {count} customers is more than the limit of {MAX_EVENTS} events"));
            }
            (1..=count).map(|i| format!("customer_{i:03}")).collect()
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item.as_str() {
                Some(name) if !name.trim().is_empty() => Ok(name.to_string()),
                Some(_) => Err(format!("{place}[{i}]: a customer name must not be empty")),
                None => Err(format!("{place}[{i}]: a customer name must be a string, got {item}")),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(format!("{place}: expected a list of customer names or a count, got {other}")),
    };
    if names.is_empty() {
        return Err(format!("{place}: the list of customers is empty"));
    }
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(format!("{place}: customer {name:?} is listed twice"));
        }
    }
    Ok(names)
}

/// Merges params with the run's conf (`conf.customers`, `conf.seed` win) and checks the result.
pub fn settings(ctx: &Context) -> Result<Settings, String> {
    let params: Params = ctx.params_as()?;
    let customers = match (ctx.conf.get("customers"), &params.customers) {
        (Some(value), _) => customers(value, "conf.customers")?,
        (None, Some(value)) => customers(value, "params.customers")?,
        (None, None) => DEFAULT_CUSTOMERS.iter().map(|s| s.to_string()).collect(),
    };
    let seed = match ctx.conf.get("seed") {
        Some(value) => {
            value.as_u64().ok_or_else(|| format!("conf.seed: expected a non-negative integer, got {value}"))?
        }
        None => params.seed.unwrap_or(1),
    };
    if params.events_per_customer == 0 {
        return Err("params.events_per_customer must be at least 1".into());
    }
    let total = customers.len() as u64 * params.events_per_customer;
    if total > MAX_EVENTS as u64 {
        return Err(format!(
            "{} customers × {} events_per_customer = {total} events, more than the limit of {MAX_EVENTS} \
             (it keeps the output under the 1 MiB output limit): lower events_per_customer",
            customers.len(),
            params.events_per_customer
        ));
    }
    if !(params.fraud_rate > 0.0 && params.fraud_rate < 1.0) {
        return Err(format!("params.fraud_rate must be between 0 and 1 (exclusive), got {}", params.fraud_rate));
    }
    Ok(Settings {
        customers,
        events_per_customer: params.events_per_customer as usize,
        seed,
        fraud_rate: params.fraud_rate,
    })
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// How strongly the hidden rule decides the label: higher is less noisy.
const SHARPNESS: f64 = 1.6;

/// The shared rule's weights on: log amount, night, new account, items, foreign, crypto, paypal.
const BASE_RULE: [f64; 7] = [1.0, 0.9, 1.0, 0.4, 1.1, 1.2, -0.4];

/// The events of one customer.
fn customer_events(name: &str, settings: &Settings) -> Vec<Event> {
    let mut rng = Rng::new(fnv1a(name.as_bytes()) ^ settings.seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
    // The customer's traffic...
    let amount_level = 3.6 + 0.4 * rng.normal(); // log dollars: about $37 typical
    let foreign_share = 0.05 + 0.2 * rng.unit();
    let crypto_share = 0.02 + 0.12 * rng.unit();
    let paypal_share = 0.1 + 0.2 * rng.unit();
    // ...its hidden rule: the shared one, each weight scaled by its own factor...
    let rule: Vec<f64> = BASE_RULE.iter().map(|w| w * (1.0 + 0.4 * rng.normal()).max(0.0)).collect();
    // ...and its own fraud rate around the asked one.
    let rate = (settings.fraud_rate * (0.6 + 0.8 * rng.unit())).clamp(0.001, 0.999);

    let mut events = Vec::with_capacity(settings.events_per_customer);
    let mut scores = Vec::with_capacity(settings.events_per_customer);
    for i in 0..settings.events_per_customer {
        let amount = ((amount_level + 1.0 * rng.normal()).exp() * 100.0).round().max(1.0) / 100.0;
        let hour = if rng.unit() < 0.25 {
            (rng.unit() * 24.0) as u32
        } else {
            (14.0 + 4.0 * rng.normal()).round().rem_euclid(24.0) as u32
        };
        let account_age_days = (5.0 + 1.5 * rng.normal()).exp().min(3650.0) as u32;
        let n_items = 1 + ((-(1.0 - rng.unit()).ln() * 2.0) as u32).min(19);
        let is_foreign = u8::from(rng.unit() < foreign_share);
        let pay = rng.unit();
        let payment = if pay < crypto_share {
            "crypto"
        } else if pay < crypto_share + paypal_share {
            "paypal"
        } else {
            "card"
        };
        let signals = [
            amount.ln() - 3.6,
            f64::from(u8::from(hour < 6)),
            -((f64::from(account_age_days) + 1.0).ln() - 5.0) / 1.5,
            (f64::from(n_items) - 3.0) / 2.0,
            f64::from(is_foreign),
            f64::from(u8::from(payment == "crypto")),
            f64::from(u8::from(payment == "paypal")),
        ];
        scores.push(SHARPNESS * signals.iter().zip(&rule).map(|(s, w)| s * w).sum::<f64>());
        events.push(Event {
            id: format!("{name}-{i:05}"),
            customer: name.to_string(),
            amount,
            hour,
            account_age_days,
            n_items,
            is_foreign,
            payment: payment.to_string(),
            fraud: 0,
        });
    }
    // The offset that makes the expected share of fraud this customer's rate (bisection).
    let (mut low, mut high) = (-60.0, 60.0);
    for _ in 0..60 {
        let mid: f64 = (low + high) / 2.0;
        let mean = scores.iter().map(|s| sigmoid(s + mid)).sum::<f64>() / scores.len() as f64;
        if mean < rate {
            low = mid;
        } else {
            high = mid;
        }
    }
    for (event, score) in events.iter_mut().zip(&scores) {
        event.fraud = u8::from(rng.unit() < sigmoid(score + low));
    }
    events
}

/// All the events, customer after customer.
pub fn generate(settings: &Settings) -> Vec<Event> {
    settings.customers.iter().flat_map(|name| customer_events(name, settings)).collect()
}

/// The operator.
pub fn handle(ctx: Context) -> Result<TaskResult, String> {
    let settings = settings(&ctx)?;
    eprintln!(
        "generating {} events for each of {} customers (seed {}, fraud rate {})",
        settings.events_per_customer,
        settings.customers.len(),
        settings.seed,
        settings.fraud_rate
    );
    let events = generate(&settings);
    let frauds = events.iter().filter(|e| e.fraud == 1).count();
    let share = frauds as f64 / events.len() as f64;
    eprintln!("generated {} events, {frauds} labelled fraud ({:.1}%)", events.len(), 100.0 * share);
    let output = json!({ "customers": settings.customers, "seed": settings.seed, "events": events });
    Ok(TaskResult::with_output(output)
        .metric("customers", settings.customers.len() as f64)
        .metric("events", events.len() as f64)
        .metric("frauds", frauds as f64)
        .metric("fraud_rate", share))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(text: &str) -> Context {
        serde_json::from_str(text).unwrap()
    }

    fn settings_of(text: &str) -> Settings {
        settings(&ctx(text)).unwrap()
    }

    fn error_of(text: &str) -> String {
        handle(ctx(text)).unwrap_err()
    }

    #[test]
    fn defaults() {
        let s = settings_of(r#"{"abi":1}"#);
        assert_eq!(s.customers, ["acme", "globex", "initech"]);
        assert_eq!((s.events_per_customer, s.seed, s.fraud_rate), (200, 1, 0.1));
    }

    #[test]
    fn customers_as_a_count() {
        let s = settings_of(r#"{"abi":1,"params":{"customers":3}}"#);
        assert_eq!(s.customers, ["customer_001", "customer_002", "customer_003"]);
    }

    #[test]
    fn conf_overrides_params() {
        let s = settings_of(
            r#"{"abi":1,"params":{"customers":["a","b"],"seed":3},"conf":{"customers":["zeta"],"seed":9}}"#,
        );
        assert_eq!(s.customers, ["zeta"]);
        assert_eq!(s.seed, 9);
    }

    #[test]
    fn bad_params_are_clear_errors() {
        assert_eq!(
            error_of(r#"{"abi":1,"params":{"customers":[]}}"#),
            "params.customers: the list of customers is empty"
        );
        assert_eq!(
            error_of(r#"{"abi":1,"params":{"customers":["a",2]}}"#),
            "params.customers[1]: a customer name must be a string, got 2"
        );
        assert_eq!(
            error_of(r#"{"abi":1,"params":{"customers":["a","a"]}}"#),
            "params.customers: customer \"a\" is listed twice"
        );
        assert_eq!(
            error_of(r#"{"abi":1,"params":{"customers":0}}"#),
            "params.customers: a count of customers must be an integer of at least 1, got 0"
        );
        assert_eq!(
            error_of(r#"{"abi":1,"conf":{"seed":"x"}}"#),
            "conf.seed: expected a non-negative integer, got \"x\""
        );
        assert!(error_of(r#"{"abi":1,"params":{"fraud_rate":1.5}}"#)
            .starts_with("params.fraud_rate must be between 0 and 1"));
        assert!(error_of(r#"{"abi":1,"params":{"events_per_customer":0}}"#).contains("at least 1"));
        assert!(error_of(r#"{"abi":1,"params":{"customers":10,"events_per_customer":501}}"#)
            .contains("5010 events, more than the limit"));
        let typo = error_of(r#"{"abi":1,"params":{"event_per_customer":5}}"#);
        assert!(typo.starts_with("params: unknown field `event_per_customer`"), "{typo}");
    }

    #[test]
    fn deterministic_and_per_customer() {
        let s = settings_of(r#"{"abi":1,"params":{"customers":["acme","globex"],"seed":7}}"#);
        let a = generate(&s);
        assert_eq!(a, generate(&s));
        assert_eq!(a.len(), 400);
        // acme's events do not depend on who else is in the list.
        let alone = generate(&Settings { customers: vec!["acme".into()], ..s.clone() });
        assert_eq!(alone[..], a[..200]);
        // Another seed, other events.
        assert_ne!(generate(&Settings { seed: 8, ..s })[..10], a[..10]);
    }

    #[test]
    fn fields_are_in_range_and_fraud_near_the_rate() {
        let s = settings_of(r#"{"abi":1,"params":{"customers":5,"events_per_customer":1000,"seed":3}}"#);
        let events = generate(&s);
        for e in &events {
            assert!(e.amount >= 0.01 && e.hour < 24 && e.account_age_days <= 3650, "{e:?}");
            assert!((1..=20).contains(&e.n_items) && e.is_foreign <= 1 && e.fraud <= 1, "{e:?}");
            assert!(["card", "paypal", "crypto"].contains(&e.payment.as_str()));
        }
        let share = events.iter().filter(|e| e.fraud == 1).count() as f64 / events.len() as f64;
        assert!((0.06..0.14).contains(&share), "fraud share {share}");
    }

    #[test]
    fn the_label_follows_the_rule() {
        // Fraud is much more common on foreign cards and new accounts, as the hidden rule says.
        let s = settings_of(r#"{"abi":1,"params":{"customers":4,"events_per_customer":1000}}"#);
        let events = generate(&s);
        let rate = |keep: &dyn Fn(&Event) -> bool| {
            let kept: Vec<_> = events.iter().filter(|e| keep(e)).collect();
            kept.iter().filter(|e| e.fraud == 1).count() as f64 / kept.len() as f64
        };
        assert!(rate(&|e| e.is_foreign == 1) > 1.5 * rate(&|e| e.is_foreign == 0));
        assert!(rate(&|e| e.account_age_days < 30) > 3.0 * rate(&|e| e.account_age_days > 365));
    }

    #[test]
    fn the_largest_output_fits_in_1_mib() {
        let text = format!(r#"{{"abi":1,"params":{{"customers":{MAX_EVENTS},"events_per_customer":1}}}}"#);
        let result = handle(ctx(&text)).unwrap();
        let size = serde_json::to_vec(&result).unwrap().len();
        assert!(size < 1 << 20, "{size} bytes");
        let result = handle(ctx(
            r#"{"abi":1,"params":{"customers":["a-rather-long-customer-name"],"events_per_customer":5000}}"#,
        ))
        .unwrap();
        let size = serde_json::to_vec(&result).unwrap().len();
        assert!(size < 1 << 20, "{size} bytes");
        assert_eq!(result.metrics["events"], 5000.0);
    }
}
