//! A Redis connection that answers in process, for the wrappers' own cost and behaviour
//! without a server: `GET` gets a value, any other command an I/O error, a pipeline `OK`s.
#![cfg(feature = "redis")]

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// Answers at once; its database index is 3 (0 is the default, so a wrong one shows).
pub struct Answering;

impl ConnectionLike for Answering {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let is_get = cmd
            .args_iter()
            .next()
            .is_some_and(|arg| matches!(arg, redis::Arg::Simple(b"GET")));
        Box::pin(std::future::ready(if is_get {
            Ok(Value::BulkString(b"value".to_vec()))
        } else {
            Err(std::io::Error::other("connection reset").into())
        }))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        _pipeline: &'a Pipeline,
        _offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(std::future::ready(Ok(vec![Value::Okay; count])))
    }

    fn get_db(&self) -> i64 {
        3
    }
}
