//! Flag keys of new flags, and positions in flag documents for messages.

/// The longest flag key accepted for a new flag, in bytes.
pub const MAX_KEY_LEN: usize = 200;

/// Checks the key of a *new* flag: 1 to [`MAX_KEY_LEN`] characters, ASCII
/// letters, digits, `_`, `-` and `.`, starting with a letter, digit or `_`
/// (an identifier, as flagd's keys are; safe in a URL path segment, a file
/// name or a log line). Loading does not check keys, so flags stored
/// before this rule keep working. `Err` says what is wrong.
pub fn check_new_key(key: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let problem = if key.is_empty() {
        "must not be empty".to_string()
    } else if key.len() > MAX_KEY_LEN {
        format!("is longer than {MAX_KEY_LEN} characters")
    } else if let Some(c) = key.chars().find(|&c| !allowed(c)) {
        format!("contains {c:?}")
    } else if key.starts_with(['-', '.']) {
        "starts with '-' or '.'".to_string()
    } else {
        return Ok(());
    };
    Err(format!(
        "flag key {key:?} {problem}: a key is 1 to {MAX_KEY_LEN} ASCII letters, digits, '_', '-' or '.', starting with a letter, digit or '_'"
    ))
}

/// The 1-based line and column (in characters) of the value a JSON pointer
/// designates in `src`, or of its deepest ancestor that exists.
pub fn position_of(src: &str, pointer: &str) -> (usize, usize) {
    super::locate::locate(src, pointer)
}
