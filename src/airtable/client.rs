//! The [`Client`] and the one loop every API request goes through: wait for the pacer, send,
//! classify the answer, and retry or fail with a typed error.
//!
//! A `Client` is cheap to clone; clones share the connection pool, the pacer and the counters, so
//! any number of tasks can use one client and stay together under the rate limits. The endpoint
//! methods (reads, writes, downloads) live in their own modules and all call
//! [`Client::execute`] with a [`Call`] that says which base the request counts against, which
//! scope it needs, how to name what it looks for in a 404, and whether it is safe to repeat.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use super::counters::{ClientCounters, Counters};
use super::error::{AirtableError, ApiError};
use super::options::ClientOptions;
use super::pacer::{Pacer, WindowSpec};
use super::retry::{self, RetryPolicy, StatusAction};
use super::token::Token;

/// A client of the Airtable Web API. Clone it freely: clones share pacing, connections and
/// counters ([`Client::counting_apart`] makes one that also counts on its own).
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
    /// Counters of this client alone (requests also count in `inner`'s).
    tally: Option<Arc<Counters>>,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) download_http: reqwest::Client,
    pub(crate) api_url: Url,
    pub(crate) content_url: Url,
    pub(crate) options: ClientOptions,
    pub(crate) pacer: Pacer,
    pub(crate) policy: RetryPolicy,
    pub(crate) counters: Counters,
    token: Token,
}

/// Which host a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Host {
    Api,
    Content,
}

/// One API request, described for [`Client::execute`].
pub(crate) struct Call<'a> {
    /// What is being done, for messages: "list records".
    pub(crate) operation: &'static str,
    pub(crate) method: Method,
    pub(crate) url: Url,
    /// A JSON body.
    pub(crate) body: Option<Bytes>,
    /// The base the request counts against; `None` for token-wide calls like listing bases.
    pub(crate) base: Option<&'a str>,
    /// The scope the request needs, named in 403 messages.
    pub(crate) scope: &'static str,
    /// What a 404 means, e.g. "table `tblX` in base `appY`".
    pub(crate) not_found: String,
    /// Whether sending it twice does no harm.
    pub(crate) idempotent: bool,
}

impl Client {
    /// A client for `token` with `options`.
    pub fn new(token: Token, options: ClientOptions) -> Result<Client, AirtableError> {
        let api_url = parse_root(&options.api_url, "api_url")?;
        let content_url = parse_root(&options.content_url, "content_url")?;

        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .map_err(|_| AirtableError::InvalidOptions("the token is not a valid header".into()))?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);

        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(&options.user_agent)
            .timeout(options.request_timeout)
            .connect_timeout(options.connect_timeout)
            // Airtable does not redirect; never carry the token anywhere else.
            .redirect(reqwest::redirect::Policy::none())
            // Drop idle connections before a server or load balancer is likely to: a request
            // written into a connection the other side just closed fails after sending, which
            // for a create means an unknown outcome.
            .pool_idle_timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| AirtableError::InvalidOptions(format!("cannot build http client: {e}")))?;
        // Attachment downloads: no token, no total timeout (files can be large), but a read
        // timeout so a stalled transfer fails and gets resumed.
        let download_http = reqwest::Client::builder()
            .user_agent(&options.user_agent)
            .read_timeout(options.request_timeout)
            .connect_timeout(options.connect_timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| AirtableError::InvalidOptions(format!("cannot build http client: {e}")))?;

        let per_base = WindowSpec::from_rate(options.per_base_rate, options.pacing_margin);
        let per_token = WindowSpec::from_rate(options.per_token_rate, options.pacing_margin);
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                download_http,
                api_url,
                content_url,
                pacer: Pacer::new(per_base, per_token),
                policy: RetryPolicy::new(&options),
                counters: Counters::default(),
                options,
                token,
            }),
            tally: None,
        })
    }

    /// A clone that shares pacing and connections and whose [`Client::counters`] count only
    /// its own requests (they still count in the shared counters too): one per base when
    /// several bases are backed up at once.
    pub fn counting_apart(&self) -> Client {
        Client {
            inner: self.inner.clone(),
            tally: Some(Arc::new(Counters::default())),
        }
    }

    /// Applies `count` to the shared counters and to this client's own, if it has them.
    pub(crate) fn count(&self, count: impl Fn(&Counters)) {
        count(&self.inner.counters);
        if let Some(tally) = &self.tally {
            count(tally);
        }
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// A snapshot of the counters shared by this client and its clones (of its own, for a
    /// client made by [`Client::counting_apart`]).
    pub fn counters(&self) -> ClientCounters {
        match &self.tally {
            Some(tally) => tally.snapshot(),
            None => self.inner.counters.snapshot(),
        }
    }

    /// An URL on the API or content host with these path segments (each percent-encoded, so a
    /// table name may contain `/`).
    pub(crate) fn url(&self, host: Host, segments: &[&str]) -> Url {
        let mut url = match host {
            Host::Api => self.inner.api_url.clone(),
            Host::Content => self.inner.content_url.clone(),
        };
        url.path_segments_mut()
            .expect("checked in Client::new: the root URL can be a base")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// Sends `call` and returns the JSON answer parsed as `T`.
    pub(crate) async fn execute_json<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
    ) -> Result<T, AirtableError> {
        let operation = call.operation;
        let body = self.execute(call).await?;
        serde_json::from_slice(&body)
            .map_err(|source| AirtableError::InvalidResponse { operation, source })
    }

    /// Sends `call`, pacing and retrying as the policy says, and returns the body of the first
    /// successful answer.
    pub(crate) async fn execute(&self, call: Call<'_>) -> Result<Bytes, AirtableError> {
        let inner = &*self.inner;
        let mut retries = 0u32;
        loop {
            inner.pacer.acquire(call.base).await;
            self.count(|c| Counters::bump(&c.requests));
            let started = StdInstant::now();
            let outcome = self.send_once(&call).await;
            let elapsed_ms = started.elapsed().as_millis() as u64;

            let (status, headers, body) = match outcome {
                Ok(answer) => answer,
                Err(error) => {
                    let error = error.without_url();
                    self.count(|c| Counters::bump(&c.transport_errors));
                    tracing::debug!(
                        operation = call.operation,
                        method = %call.method,
                        path = call.url.path(),
                        retries,
                        elapsed_ms,
                        error = %error,
                        "airtable request failed"
                    );
                    if !RetryPolicy::may_retry_transport(&error, call.idempotent) {
                        return Err(AirtableError::WriteOutcomeUnknown {
                            operation: call.operation,
                            method: call.method.to_string(),
                            path: call.url.path().to_owned(),
                            reason: retry::describe_transport(&error).to_owned(),
                            source: Some(error),
                        });
                    }
                    if retries >= inner.policy.max_retries {
                        return Err(AirtableError::Transport {
                            operation: call.operation,
                            method: call.method.to_string(),
                            path: call.url.path().to_owned(),
                            retries,
                            source: error,
                        });
                    }
                    tokio::time::sleep(inner.policy.backoff(retries, None)).await;
                    retries += 1;
                    self.count(|c| Counters::bump(&c.retries));
                    continue;
                }
            };

            tracing::debug!(
                operation = call.operation,
                method = %call.method,
                path = call.url.path(),
                status,
                retries,
                elapsed_ms,
                "airtable request"
            );
            if (200..300).contains(&status) {
                return Ok(body);
            }
            self.count(|c| c.status(status));
            let api = ApiError::parse(status, &body);
            let retry_after = retry::retry_after(&headers);
            match RetryPolicy::on_status(status, call.idempotent) {
                StatusAction::RateLimited => {
                    self.count(|c| Counters::bump(&c.rate_limited));
                    if api.is("PUBLIC_API_BILLING_LIMIT_EXCEEDED") {
                        return Err(AirtableError::BillingLimitExceeded { api });
                    }
                    let penalty = inner.policy.penalty(retry_after);
                    inner.pacer.penalize(call.base, penalty);
                    tracing::warn!(
                        base = call.base.unwrap_or("(all)"),
                        penalty_secs = penalty.as_secs_f64(),
                        "airtable rate limit reached; pausing requests"
                    );
                    if retries >= inner.policy.max_retries {
                        return Err(AirtableError::RateLimited {
                            operation: call.operation,
                            retries,
                        });
                    }
                }
                StatusAction::Retry => {
                    if retries >= inner.policy.max_retries {
                        return Err(AirtableError::Server {
                            operation: call.operation,
                            retries,
                            api,
                        });
                    }
                    tokio::time::sleep(inner.policy.backoff(retries, retry_after)).await;
                }
                StatusAction::Ambiguous => {
                    return Err(AirtableError::WriteOutcomeUnknown {
                        operation: call.operation,
                        method: call.method.to_string(),
                        path: call.url.path().to_owned(),
                        reason: api.to_string(),
                        source: None,
                    });
                }
                StatusAction::Fail => return Err(final_error(&call, api)),
            }
            retries += 1;
            self.count(|c| Counters::bump(&c.retries));
        }
    }

    async fn send_once(&self, call: &Call<'_>) -> Result<(u16, HeaderMap, Bytes), reqwest::Error> {
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), call.url.clone());
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        Ok((status, headers, body))
    }
}

/// The typed error for a status that is not retried.
fn final_error(call: &Call<'_>, api: ApiError) -> AirtableError {
    match api.status {
        401 => AirtableError::Unauthorized { api },
        403 => AirtableError::Forbidden {
            operation: call.operation,
            base: call.base.map(str::to_owned),
            scope: call.scope,
            api,
        },
        404 => AirtableError::NotFound {
            what: call.not_found.clone(),
            api,
        },
        422 if api.is("LIST_RECORDS_ITERATOR_NOT_AVAILABLE") => {
            AirtableError::IteratorExpired { api }
        }
        422 => AirtableError::InvalidRequest {
            operation: call.operation,
            api,
        },
        500..=599 => AirtableError::Server {
            operation: call.operation,
            retries: 0,
            api,
        },
        _ => AirtableError::Rejected {
            operation: call.operation,
            api,
        },
    }
}

fn parse_root(url: &str, option: &str) -> Result<Url, AirtableError> {
    let parsed = Url::parse(url).map_err(|e| {
        AirtableError::InvalidOptions(format!("{option} `{url}` is not an url: {e}"))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
        return Err(AirtableError::InvalidOptions(format!(
            "{option} `{url}` must be an http or https url"
        )));
    }
    if parsed.query().is_some() || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(AirtableError::InvalidOptions(format!(
            "{option} `{url}` must not carry a query string or credentials"
        )));
    }
    Ok(parsed)
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("api_url", &self.inner.api_url.as_str())
            .field("content_url", &self.inner.content_url.as_str())
            .field("token", &self.inner.token)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(api: &str) -> Result<Client, AirtableError> {
        let options = ClientOptions {
            api_url: api.to_owned(),
            ..ClientOptions::default()
        };
        Client::new(Token::new("patSECRETSECRETSE.abcdef").unwrap(), options)
    }

    #[test]
    fn urls_escape_segments_and_keep_prefixes() {
        let c = client("http://127.0.0.1:9/prefix/").unwrap();
        let url = c.url(Host::Api, &["v0", "appA", "My/Table ü"]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/prefix/v0/appA/My%2FTable%20%C3%BC"
        );
        let c = client("http://127.0.0.1:9").unwrap();
        assert_eq!(
            c.url(Host::Api, &["v0", "meta", "bases"]).as_str(),
            "http://127.0.0.1:9/v0/meta/bases"
        );
    }

    #[test]
    fn rejects_bad_roots_and_redacts_debug() {
        assert!(client("ftp://x").is_err());
        assert!(client("not a url").is_err());
        assert!(client("https://user:pw@x/").is_err());
        let shown = format!("{:?}", client("https://api.airtable.com").unwrap());
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }
}
