#![allow(dead_code)]

#[cfg(feature = "redis")]
pub mod answering_redis;
pub mod child;
pub mod collector;
pub mod memory;
pub mod probe;
pub mod servers;
pub mod tls;
