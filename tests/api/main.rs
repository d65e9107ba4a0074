//! Integration tests: the real server on a random port, a real tonic client.

mod foundation;
mod helpers;
