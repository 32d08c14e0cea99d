//! TODO(helper): see main.rs
