//! The black-box suites, linked into one test binary: each file of this folder is a module,
//! named as before (`cargo test -p iparking-tests --test suite cds::` runs one suite; a plain
//! filter such as `./scripts/test -p iparking-tests nearby` still works). One binary instead
//! of one per file: the server and its dependencies (~130 MB of code) are linked once, not
//! thirty times, which keeps a clean build's disk and link time down (CI runs on a fresh
//! machine with little disk). The suites run in one process, two tests at a time, as each
//! file's tests did before; every test starts its own server, database and (where it kills
//! one) its own `redis-server`.

mod cds;
mod citations_privacy;
mod drivers_api;
mod drivers_app;
mod fake_stripe_wire;
mod finance_api;
mod finance_browser;
mod gateways;
mod input_hardening;
mod ledger_chain;
mod live_conformance;
mod live_recovery;
mod money_concurrency;
mod multi_node;
mod overload;
mod plate_index;
mod public_data;
mod registry_api;
mod rolling_upgrade;
mod sessions_api;
mod sms_api;
mod store_conformance;
mod stripe_cards;
mod stripe_topups;
mod tariffs_api;
mod warden_api;
mod warden_float;
mod warden_keys;
mod wardens_app;
mod web_push;
