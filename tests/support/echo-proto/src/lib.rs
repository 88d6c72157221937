//! The generated Echo service (package `echo.v1`), for service-telemetry's tests only.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("echo.v1");
