//! Surveys: the respondent's pages ([`pages`]), public behind a personal
//! link token.

pub mod pages;
