//! What each kind of model needs besides its parameters: how a classifier reads its rows
//! (tokenization, vocabulary, labels) and how a forecaster reads a series, shared by the
//! command line, the web build and embedders.

pub mod classify;
pub mod forecast;
