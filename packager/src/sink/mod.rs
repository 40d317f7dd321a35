//! Sinks: each consumes an [`Image`](crate::model::Image). Today the polyglot executable; OCI
//! layout, archive and registry sinks plug in beside it.

pub mod polyglot;
