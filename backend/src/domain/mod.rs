//! Pure domain logic: no I/O, no clock, no database. Everything here is unit-tested.

pub mod charge;
pub mod check;
pub mod city;
pub mod finance;
pub mod ledger;
pub mod money;
pub mod phone;
pub mod plate;
pub mod session;
pub mod sms_command;
pub mod tariff;
