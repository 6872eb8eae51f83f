//! Pure domain logic: no I/O, no clock, no database. Everything here is unit-tested.

pub mod city;
pub mod money;
pub mod tariff;
