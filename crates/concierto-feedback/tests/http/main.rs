//! The intake over real sockets: the router bound on 127.0.0.1:0, called with
//! reqwest; feedback read back from the store and from the FEEDBACK stream;
//! gate notifications sent to a mock of Slack's Web API.

mod channels;
mod common;
mod durability;
mod email;
mod failure;
mod flood;
mod form;
mod limits;
mod list;
mod live;
mod nats;
mod notify;
mod slack;
