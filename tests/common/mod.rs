#![allow(dead_code)]

pub mod collector;
pub mod probe;
