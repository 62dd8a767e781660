//! The StreamBus driver of tidewater.
#![warn(missing_docs)]

pub mod protocol;
