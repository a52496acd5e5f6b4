//! Integration tests of the NATS backend against the server named by
//! `PULSE_TEST_NATS_URL` (skipped, saying so, when it is unset).

mod aggregates;
mod contract;
mod dead_letters;
mod dedup;
mod instances;
mod jobs;
mod layout;
mod ordering;
mod outage;
mod support;
mod tls;
