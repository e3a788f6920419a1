//! airback: back up Airtable bases into a content-addressed, deduplicating repository.
