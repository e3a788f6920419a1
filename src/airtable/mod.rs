//! The Airtable Web API client: token handling, pacing at the rate-limit ceiling, retries, and
//! typed errors. Everything that talks HTTP to Airtable goes through here.
