//! An organisation's billing details: what an invoice names. Checked here,
//! stored sealed with the [`FieldCipher`] (all but the country, which VAT
//! reporting needs in clear and which names no one on its own).

use uuid::Uuid;

use super::vat;
use crate::field_cipher::{CipherError, FieldCipher};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BillingDetails {
    pub company: Option<String>,
    pub vat_id: Option<String>,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    pub country: String,
    pub city: String,
    pub postal_code: String,
    /// One to three lines.
    pub address_lines: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DetailsError {
    #[error("`country` must be an ISO 3166-1 alpha-2 code such as DE")]
    Country,
    #[error("`{0}` must be 1 to {1} characters, without control characters")]
    Text(&'static str, usize),
    #[error("`address_lines` must hold 1 to 3 lines")]
    Lines,
    #[error(transparent)]
    Vat(#[from] vat::VatError),
}

fn text(field: &'static str, value: &str, max: usize) -> Result<String, DetailsError> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(DetailsError::Text(field, max));
    }
    Ok(v.to_owned())
}

/// ISO 3166-1 alpha-2 codes in use (user-assigned XX-ZZ are refused).
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL \
GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR \
LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK \
PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR \
TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW";

impl BillingDetails {
    /// Trimmed, normalised (the VAT id's canonical form), or the first fault.
    pub fn validated(self) -> Result<Self, DetailsError> {
        let country = self.country.trim().to_ascii_uppercase();
        if country.len() != 2 || !COUNTRIES.split_ascii_whitespace().any(|c| c == country) {
            return Err(DetailsError::Country);
        }
        let company = self.company.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(|c| text("company", c, 200)).transpose()?;
        let vat_id = self.vat_id.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(|v| vat::validate(v, &country)).transpose()?;
        if self.address_lines.is_empty() || self.address_lines.len() > 3 {
            return Err(DetailsError::Lines);
        }
        let address_lines = self.address_lines.iter().map(|l| text("address_lines", l, 200)).collect::<Result<_, _>>()?;
        Ok(Self {
            company,
            vat_id,
            city: text("city", &self.city, 100)?,
            postal_code: text("postal_code", &self.postal_code, 20)?,
            country,
            address_lines,
        })
    }

    fn associated(organization: Uuid) -> Vec<u8> {
        format!("billing_details:{organization}").into_bytes()
    }

    pub fn seal(&self, cipher: &FieldCipher, organization: Uuid) -> Result<Vec<u8>, CipherError> {
        let json = serde_json::to_vec(self).map_err(|_| CipherError::Malformed)?;
        cipher.encrypt(&json, &Self::associated(organization))
    }

    pub fn open(cipher: &FieldCipher, organization: Uuid, sealed: &[u8]) -> Result<Self, CipherError> {
        let json = cipher.decrypt(sealed, &Self::associated(organization))?;
        serde_json::from_slice(&json).map_err(|_| CipherError::Malformed)
    }
}
