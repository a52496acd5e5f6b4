//! Integration tests of the NATS backend against the server named by
//! `PULSE_TEST_NATS_URL` (skipped, saying so, when it is unset).

mod contract;
mod support;
