//! The change ticket a release ships under (`[release] change`, `--change`): what a ticket
//! reference may look like, checked the same way for the file and the flag.

/// The longest ticket reference accepted.
pub const MAX_LEN: usize = 64;

/// `Err` says what is wrong with a ticket reference and how to write it: one line of at
/// most 64 printable characters, not blank (e.g. `CHG-1234`, `JIRA-42`, `INC0012345`).
pub fn check(ticket: &str) -> Result<(), String> {
    if ticket.trim().is_empty() {
        return Err("the change ticket is empty: write its reference, e.g. `CHG-1234`".into());
    }
    if ticket.chars().count() > MAX_LEN {
        return Err(format!(
            "the change ticket is longer than {MAX_LEN} characters: write its reference (e.g. `CHG-1234`), not its description"
        ));
    }
    if ticket.chars().any(char::is_control) {
        return Err(
            "the change ticket holds a control character (a newline or tab): write its reference on one line, e.g. `CHG-1234`".into(),
        );
    }
    if ticket != ticket.trim() {
        return Err(
            "the change ticket starts or ends with a space: write `CHG-1234`, not ` CHG-1234 `"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_accepted_and_prose_is_not() {
        assert!(check("CHG-1234").is_ok());
        assert!(check("INC0012345").is_ok());
        assert!(check("").unwrap_err().contains("empty"));
        assert!(check("   ").unwrap_err().contains("empty"));
        assert!(check("CHG-1\nrm").unwrap_err().contains("control"));
        assert!(check(" CHG-1").unwrap_err().contains("space"));
        assert!(check(&"x".repeat(65)).unwrap_err().contains("64"));
    }
}
