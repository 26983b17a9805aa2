//! The pure core: plain data and functions, no I/O, no clock but the
//! instants they are given. Everything here is unit-tested on its own.
//!
//! | module        | concern                                                      |
//! |---------------|--------------------------------------------------------------|
//! | [`request`]   | one input line or request body into a [`request::Request`]   |
//! | [`overrides`] | a line's `llmroute` object: routing for one request          |
//! | [`cachekey`]  | canonical form of a request and its cache key                |
//! | [`catalogue`] | the model catalogue: parsing, compact form, embedded snapshot |
//! | [`quality`]   | quality priors                                               |
//! | [`learned`]   | quality learned from feedback: the posterior, its decay, tasks |
//! | [`pooled`]    | where a task's quality starts: other tasks, other candidates |
//! | [`scoring`]   | the weighted scorer                                          |
//! | [`eligible`]  | which candidates a request may go to, and why others not     |
//! | [`ranking`]   | routing settings, ranking, the plan of a request             |
//! | [`health`]    | latency averages and rate-limit pauses                       |
//! | [`failure`]   | how attempts fail; what a success carries; error types       |
//! | [`attempts`]  | the attempt policy: send, wait or give up                    |
//! | [`explore`]   | which candidate a request probes, so the router keeps learning |
//! | [`hedge`]     | when a slow attempt is hedged, and how many may be           |
//! | [`minute`]    | counts per calendar minute, for limits a minute              |
//! | [`surrogates`] | a lone UTF-16 surrogate escape mended, so JSON with one parses |
//! | [`sse`]       | streamed completions: events, folding, replay                |
//! | [`duration`]  | humantime durations                                          |
//! | [`numbers`]   | costs, shares, counts and rates as people read them          |
//! | [`urls`]      | URLs as shown: never with their password                      |

pub mod attempts;
pub mod cachekey;
pub mod catalogue;
pub mod duration;
pub mod eligible;
pub mod explore;
pub mod failure;
pub mod health;
pub mod hedge;
pub mod keys;
pub mod learned;
pub mod minute;
pub mod numbers;
pub mod overrides;
pub mod pooled;
pub mod quality;
pub mod ranking;
pub mod request;
pub mod scoring;
pub mod sse;
pub mod surrogates;
pub mod urls;
