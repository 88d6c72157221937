#![allow(dead_code)]

pub mod child;
pub mod collector;
pub mod probe;
pub mod servers;
pub mod tls;
