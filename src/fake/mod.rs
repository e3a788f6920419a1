//! A strict, stateful fake of the Airtable Web API, used by the tests, the benchmarks and
//! `airback demo`. It serves the same routes, shapes and errors as the real service.
