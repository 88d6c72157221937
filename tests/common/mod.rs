#![allow(dead_code)]

pub mod child;
pub mod collector;
pub mod memory;
pub mod probe;
pub mod servers;
pub mod tls;
