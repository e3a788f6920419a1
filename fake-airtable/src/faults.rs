//! Fault injection: random 502/503/500 answers, connection resets, slow responses, and forced
//! expiry of list iterators and attachment URLs, all drawn from one seeded generator.
//!
//! # The SPEC grammar
//!
//! ```text
//! SPEC     := "" | "none" | ITEM ("," ITEM)*
//! ITEM     := "503=" PROB | "502=" PROB | "500=" PROB | "reset=" PROB
//!           | "slow=" PROB ":" DURATION
//!           | "seed=" U64
//!           | "iterexpire=" N      the N-th list request that carries an offset (counting
//!                                  from 1) finds every iterator expired (once)
//!           | "missing=" P         a fraction P of attachments answer 404 on every download
//!           | "urlfail=" P         a fraction P of `{url}` attachment writes fail to fetch,
//!                                  and the file is dropped without a word
//!           | "urlexpire=" N       the N-th attachment download finds every URL issued so far
//!                                  expired (once)
//!           | "downloads=" ("on" | "off")   whether 5xx and resets also hit attachment
//!                                  downloads (default on)
//! PROB     := a decimal in [0, 1]
//! DURATION := a humantime duration: 2s, 250ms, 1m
//! ```
//!
//! Example: `503=0.05,502=0.02,reset=0.02,slow=0.01:2s,iterexpire=3,urlexpire=5,seed=7`.
//! Items may come in any order, each at most once; spaces around items are ignored.
//!
//! `slow` delays API requests only; `503`/`502`/`500` and `reset` also hit attachment
//! downloads unless `downloads=off`. The forced expiries are one-shot triggers. `missing=P`
//! makes a fraction P of the attachments (chosen by seed and attachment id) answer 404 on
//! every download, as content lost on the content host would. `urlfail=P` makes the fetch of
//! a fraction P of the URLs written as attachments fail (chosen by seed and URL): Airtable
//! then drops the file from its cell and reports nothing, which is what restore must catch.
//!
//! 5xx answers are decided before a request is handled, so nothing happens on the server.
//! A reset is decided before but carried out after handling: the request takes effect and the
//! connection is then cut mid-response, which is what makes blind retries of writes dangerous.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The fault set. `Default` injects nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Probability of a 503 `RETRIABLE_ERROR`.
    pub p503: f64,
    /// Probability of a 502.
    pub p502: f64,
    /// Probability of a 500.
    pub p500: f64,
    /// Probability of cutting the connection mid-response.
    pub reset: f64,
    /// Probability of a slow response, and its delay.
    pub slow: f64,
    pub slow_delay: Duration,
    /// Seed of the fault generator.
    pub seed: u64,
    /// The n-th list request with an offset finds all iterators expired (once).
    pub expire_iterators_at: Option<u64>,
    /// The n-th attachment download finds all URLs expired (once).
    pub expire_urls_at: Option<u64>,
    /// Whether 5xx and resets also apply to attachment downloads.
    pub downloads: bool,
    /// Fraction of attachments whose content is gone from the content host: their downloads
    /// answer 404 every time. Which ones is decided by (seed, attachment id).
    pub missing: f64,
    /// Fraction of `{url}` attachment writes whose fetch fails, so that Airtable drops the
    /// file without a word. Which ones is decided by (seed, URL).
    pub url_fail: f64,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            p503: 0.0,
            p502: 0.0,
            p500: 0.0,
            reset: 0.0,
            slow: 0.0,
            slow_delay: Duration::ZERO,
            seed: 0,
            expire_iterators_at: None,
            expire_urls_at: None,
            downloads: true,
            missing: 0.0,
            url_fail: 0.0,
        }
    }
}

impl Faults {
    /// No faults at all.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// Whether this attachment's content is gone (see [`Faults::missing`]).
    pub fn is_missing(&self, attachment_id: &str) -> bool {
        self.draw(attachment_id) < self.missing
    }

    /// Whether fetching this `{url}` attachment fails (see `url_fail`).
    pub fn url_fetch_fails(&self, url: &str) -> bool {
        self.draw(url) < self.url_fail
    }

    /// A number in [0, 1) fixed by the seed and `key`.
    fn draw(&self, key: &str) -> f64 {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.seed.to_le_bytes());
        hasher.update(key.as_bytes());
        let draw = u64::from_le_bytes(
            hasher.finalize().as_bytes()[..8]
                .try_into()
                .expect("8 bytes"),
        );
        draw as f64 / u64::MAX as f64
    }

    /// Whether any random fault can happen.
    pub fn is_active(&self) -> bool {
        self.p503 > 0.0 || self.p502 > 0.0 || self.p500 > 0.0 || self.reset > 0.0 || self.slow > 0.0
    }
}

/// Why a SPEC did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fault spec item `{item}`: {reason}")]
pub struct FaultSpecError {
    pub item: String,
    pub reason: String,
}

fn probability(item: &str, text: &str) -> Result<f64, FaultSpecError> {
    let value: f64 = text.parse().map_err(|_| FaultSpecError {
        item: item.to_owned(),
        reason: "expected a probability such as 0.05".to_owned(),
    })?;
    if !(0.0..=1.0).contains(&value) {
        return Err(FaultSpecError {
            item: item.to_owned(),
            reason: "a probability must be between 0 and 1".to_owned(),
        });
    }
    Ok(value)
}

impl FromStr for Faults {
    type Err = FaultSpecError;

    fn from_str(spec: &str) -> Result<Faults, FaultSpecError> {
        let mut faults = Faults::default();
        let spec = spec.trim();
        if spec.is_empty() || spec == "none" {
            return Ok(faults);
        }
        let mut seen: Vec<String> = Vec::new();
        for item in spec.split(',').map(str::trim) {
            let error = |reason: &str| FaultSpecError {
                item: item.to_owned(),
                reason: reason.to_owned(),
            };
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| error("expected key=value"))?;
            let (key, value) = (key.trim(), value.trim());
            if seen.iter().any(|existing| existing == key) {
                return Err(error("given twice"));
            }
            seen.push(key.to_owned());
            let count = || {
                value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| error("expected a positive integer"))
            };
            match key {
                "503" => faults.p503 = probability(item, value)?,
                "502" => faults.p502 = probability(item, value)?,
                "500" => faults.p500 = probability(item, value)?,
                "reset" => faults.reset = probability(item, value)?,
                "slow" => {
                    let (chance, delay) = value.split_once(':').ok_or_else(|| {
                        error("expected slow=PROBABILITY:DURATION, e.g. slow=0.01:2s")
                    })?;
                    faults.slow = probability(item, chance)?;
                    faults.slow_delay = humantime::parse_duration(delay.trim())
                        .map_err(|_| error("expected a duration such as 2s or 250ms"))?;
                }
                "seed" => {
                    faults.seed = value
                        .parse()
                        .map_err(|_| error("expected an integer seed"))?
                }
                "missing" => faults.missing = probability(item, value)?,
                "urlfail" => faults.url_fail = probability(item, value)?,
                "iterexpire" => faults.expire_iterators_at = Some(count()?),
                "urlexpire" => faults.expire_urls_at = Some(count()?),
                "downloads" => {
                    faults.downloads = match value {
                        "on" => true,
                        "off" => false,
                        _ => return Err(error("expected on or off")),
                    }
                }
                _ => return Err(error("unknown fault")),
            }
        }
        let total = faults.p503 + faults.p502 + faults.p500;
        if total > 1.0 {
            return Err(FaultSpecError {
                item: spec.to_owned(),
                reason: "the 5xx probabilities add up to more than 1".to_owned(),
            });
        }
        Ok(faults)
    }
}

impl fmt::Display for Faults {
    /// The SPEC that parses back to these faults.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items = Vec::new();
        for (key, value) in [
            ("503", self.p503),
            ("502", self.p502),
            ("500", self.p500),
            ("reset", self.reset),
        ] {
            if value > 0.0 {
                items.push(format!("{key}={value}"));
            }
        }
        if self.slow > 0.0 {
            items.push(format!(
                "slow={}:{}",
                self.slow,
                humantime::format_duration(self.slow_delay)
            ));
        }
        if let Some(n) = self.expire_iterators_at {
            items.push(format!("iterexpire={n}"));
        }
        if let Some(n) = self.expire_urls_at {
            items.push(format!("urlexpire={n}"));
        }
        if self.missing > 0.0 {
            items.push(format!("missing={}", self.missing));
        }
        if self.url_fail > 0.0 {
            items.push(format!("urlfail={}", self.url_fail));
        }
        if !self.downloads {
            items.push("downloads=off".to_owned());
        }
        if items.is_empty() {
            return f.write_str("none");
        }
        items.push(format!("seed={}", self.seed));
        f.write_str(&items.join(","))
    }
}

/// What to do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Decision {
    /// Answer with this status instead of handling the request.
    pub(crate) status: Option<u16>,
    /// Cut the connection while sending the response.
    pub(crate) reset: bool,
    /// Wait this long first.
    pub(crate) delay: Option<Duration>,
}

/// The live fault state: the configured faults and their generator and trigger counters.
#[derive(Debug)]
pub(crate) struct FaultInjector {
    faults: Faults,
    rng: fastrand::Rng,
    offset_requests: u64,
    downloads: u64,
}

impl FaultInjector {
    pub(crate) fn new(faults: Faults) -> FaultInjector {
        FaultInjector {
            rng: fastrand::Rng::with_seed(faults.seed ^ 0xfa17_5eed),
            faults,
            offset_requests: 0,
            downloads: 0,
        }
    }

    pub(crate) fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Draws the faults for one request (`download` for attachment downloads).
    pub(crate) fn decide(&mut self, download: bool) -> Decision {
        let faults = &self.faults;
        if !faults.is_active() || (download && !faults.downloads) {
            return Decision::default();
        }
        let mut decision = Decision::default();
        let roll = self.rng.f64();
        if roll < faults.p503 {
            decision.status = Some(503);
        } else if roll < faults.p503 + faults.p502 {
            decision.status = Some(502);
        } else if roll < faults.p503 + faults.p502 + faults.p500 {
            decision.status = Some(500);
        }
        if decision.status.is_none() && self.rng.f64() < faults.reset {
            decision.reset = true;
        }
        if !download && self.rng.f64() < faults.slow {
            decision.delay = Some(faults.slow_delay);
        }
        decision
    }

    /// Counts a list request that carries an offset; true when this one must expire iterators.
    pub(crate) fn offset_request_expires_iterators(&mut self) -> bool {
        self.offset_requests += 1;
        self.faults.expire_iterators_at == Some(self.offset_requests)
    }

    /// Counts a download; true when this one must expire URLs.
    pub(crate) fn download_expires_urls(&mut self) -> bool {
        self.downloads += 1;
        self.faults.expire_urls_at == Some(self.downloads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let faults: Faults = "503=0.05,502=0.02,reset=0.02,slow=0.01:2s,seed=7"
            .parse()
            .unwrap();
        assert_eq!(faults.p503, 0.05);
        assert_eq!(faults.p502, 0.02);
        assert_eq!(faults.reset, 0.02);
        assert_eq!(faults.slow, 0.01);
        assert_eq!(faults.slow_delay, Duration::from_secs(2));
        assert_eq!(faults.seed, 7);
        assert!(faults.downloads);
        let again: Faults = faults.to_string().parse().unwrap();
        assert_eq!(again, faults);
    }

    #[test]
    fn parses_triggers_and_empty_specs() {
        let faults: Faults = " iterexpire=3 , urlexpire=1,downloads=off "
            .parse()
            .unwrap();
        assert_eq!(faults.expire_iterators_at, Some(3));
        assert_eq!(faults.expire_urls_at, Some(1));
        assert!(!faults.downloads);
        let url_fail: Faults = "urlfail=0.25,seed=3".parse().unwrap();
        assert_eq!(url_fail.url_fail, 0.25);
        assert_eq!(url_fail.to_string().parse::<Faults>().unwrap(), url_fail);
        let fails = (0..400)
            .filter(|n| url_fail.url_fetch_fails(&format!("https://example.com/{n}")))
            .count();
        assert!((60..140).contains(&fails), "{fails} of 400 URLs fail");
        assert!(!Faults::default().url_fetch_fails("https://example.com/1"));
        assert_eq!("".parse::<Faults>().unwrap(), Faults::default());
        assert_eq!("none".parse::<Faults>().unwrap(), Faults::default());
        assert_eq!(Faults::default().to_string(), "none");
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in [
            "503",
            "503=2",
            "504=0.1",
            "slow=0.1",
            "slow=0.1:fast",
            "seed=x",
            "503=0.1,503=0.2",
            "iterexpire=0",
            "503=0.6,502=0.6",
        ] {
            assert!(bad.parse::<Faults>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn decisions_repeat_for_a_seed() {
        let faults: Faults = "503=0.3,reset=0.3,seed=11".parse().unwrap();
        let draw = |faults: &Faults| {
            let mut injector = FaultInjector::new(faults.clone());
            (0..50).map(|_| injector.decide(false)).collect::<Vec<_>>()
        };
        assert_eq!(draw(&faults), draw(&faults));
        assert!(
            draw(&faults)
                .iter()
                .any(|decision| decision.status == Some(503))
        );
        assert!(draw(&faults).iter().any(|decision| decision.reset));
    }
}
