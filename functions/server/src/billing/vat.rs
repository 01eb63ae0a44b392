//! VAT ids, checked offline by the `vat_id_validator` crate: the country's
//! format and, where the country defines one, its check digits (EU member
//! states, the UK, Norway, Switzerland and a few more). A country the crate
//! does not know takes a tax id of plain letters and digits, unchecked.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VatError {
    #[error("`vat_id` is not a valid VAT id for {0}: expected the prefix {1} and the country's digits, with a correct check digit")]
    Invalid(String, String),
    #[error("`vat_id` must be 2 to 20 letters and digits")]
    Shape,
}

/// The VAT prefix of a country (Greece writes EL; the rest their ISO code).
fn prefix(country: &str) -> &str {
    match country {
        "GR" => "EL",
        other => other,
    }
}

/// The id normalised (upper case, no spaces, dots or dashes; the country
/// prefix added when it was left off), or why it is refused.
pub fn validate(vat_id: &str, country: &str) -> Result<String, VatError> {
    let clean = vat_id_validator::remove_extra_chars(vat_id);
    if !(2..=20).contains(&clean.len()) || !clean.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(VatError::Shape);
    }
    let code = if country == "GR" { "EL" } else { country };
    let probe = vat_id_validator::check_vat_by_country(&clean, code);
    if !probe.is_supported_country {
        return Ok(clean);
    }
    if probe.is_valid {
        return Ok(clean);
    }
    // Written without its prefix: try once with it.
    let prefixed = format!("{}{clean}", prefix(country));
    if vat_id_validator::check_vat_by_country(&prefixed, code).is_valid {
        return Ok(prefixed);
    }
    Err(VatError::Invalid(country.to_owned(), prefix(country).to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eu_ids_with_check_digits() {
        // Published examples with valid check digits.
        assert_eq!(validate("DE 136 695 976", "DE").unwrap(), "DE136695976");
        assert_eq!(validate("136695976", "DE").unwrap(), "DE136695976");
        assert_eq!(validate("GB999000005", "GB").unwrap(), "GB999000005");
        assert!(matches!(validate("DE136695977", "DE"), Err(VatError::Invalid(..))));
        assert!(matches!(validate("GB999000005", "DE"), Err(VatError::Invalid(..))));
        assert!(matches!(validate("DE12", "DE"), Err(VatError::Invalid(..))));
        assert_eq!(validate("<script>", "DE"), Err(VatError::Shape));
        // A country without a format table: letters and digits, kept.
        assert_eq!(validate("12-345-678", "US").unwrap(), "12345678");
    }
}
