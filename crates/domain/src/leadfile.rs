//! Lead rows from CSV files and JSON, checked row by row (API.md section 5).

use crate::Invalid;
use crate::phone::{self, E164};
use crate::settings::is_valid_timezone;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};

pub const MAX_VARIABLES: usize = 50;
pub const MAX_CELL_CHARS: usize = 4096;
pub const MAX_ROWS: usize = 1_000_000;
const LISTED_ROWS_PER_GROUP: usize = 100;

/// One lead as read, before checks. `position` is the 1-based data row (blank rows counted).
#[derive(Debug, Clone, PartialEq)]
pub struct RawLead {
    pub position: usize,
    pub phone_number: Option<String>,
    pub variables: Map<String, Value>,
    pub timezone: Option<String>,
}

/// A lead that passed every row check.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadCandidate {
    pub position: usize,
    pub phone: E164,
    pub variables: Map<String, Value>,
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RowReason {
    InvalidPhoneNumber,
    MissingPhoneNumber,
    UnsupportedDestinationCountry,
    InvalidTimezone,
    TooManyColumns,
    ValueTooLong,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RowRef {
    pub position: usize,
    pub phone_number: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RowGroup {
    pub reason: RowReason,
    pub count: usize,
    pub rows: Vec<RowRef>,
}

/// Rejected rows grouped by reason, at most 100 rows listed per group.
#[derive(Debug, Default)]
pub struct Rejections {
    groups: BTreeMap<RowReason, RowGroup>,
}

impl Rejections {
    pub fn add(&mut self, reason: RowReason, position: usize, phone_number: Option<String>) {
        let group = self.groups.entry(reason).or_insert(RowGroup {
            reason,
            count: 0,
            rows: Vec::new(),
        });
        group.count += 1;
        if group.rows.len() < LISTED_ROWS_PER_GROUP {
            group.rows.push(RowRef { position, phone_number });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    pub fn into_groups(self) -> Vec<RowGroup> {
        self.groups.into_values().collect()
    }
}

fn header_key(header: &str) -> String {
    header.trim().to_lowercase().replace([' ', '-'], "_")
}

fn detect_delimiter(header_line: &str) -> u8 {
    [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|d| header_line.bytes().filter(|b| b == d).count())
        .unwrap_or(b',')
}

enum Column {
    Phone,
    Timezone,
    Variable(String),
    Ignored,
}

fn invalid_header(message: impl Into<String>) -> Invalid {
    Invalid::new("invalid_header", message)
}

/// Rows of a CSV file (UTF-8, optional BOM, `,` `;` or tab detected from the header line), read one at a
/// time so an upload never holds more than the file itself.
pub struct CsvRows<'a> {
    reader: csv::Reader<&'a [u8]>,
    text: &'a str,
    columns: Columns,
    record: csv::StringRecord,
    position: usize,
    rows: usize,
}

pub fn csv_rows(bytes: &[u8]) -> Result<CsvRows<'_>, Invalid> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Invalid::new("invalid_file", "the file is not UTF-8 text (CSV) or XLSX"))?;
    let header_line = text.lines().next().unwrap_or("");
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(detect_delimiter(header_line))
        .flexible(true)
        .has_headers(true)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| Invalid::new("invalid_file", format!("the CSV header could not be read: {e}")))?
        .iter()
        .map(String::from)
        .collect();
    let columns = Columns::from_headers(&headers)?;
    Ok(CsvRows {
        reader,
        text,
        columns,
        record: csv::StringRecord::new(),
        position: 0,
        rows: 0,
    })
}

impl Iterator for CsvRows<'_> {
    type Item = Result<RawLead, Invalid>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.reader.read_record(&mut self.record) {
                Ok(false) => return None,
                Ok(true) => {}
                Err(e) => {
                    return Some(Err(Invalid::new(
                        "invalid_file",
                        format!("the CSV could not be read: {e}"),
                    )));
                }
            }
            // The csv reader skips empty lines, but positions count them.
            let start = self.record.position().map(|p| p.byte() as usize).unwrap_or(0);
            let end = (self.reader.position().byte() as usize).min(self.text.len());
            let skipped_blank_lines = self
                .text
                .get(start..end)
                .unwrap_or("")
                .bytes()
                .take_while(|b| matches!(b, b'\n' | b'\r'))
                .filter(|b| *b == b'\n')
                .count();
            self.position += 1 + skipped_blank_lines;
            self.rows += 1;
            if self.rows > MAX_ROWS {
                return Some(Err(Invalid::new(
                    "too_many_rows",
                    format!("a file holds at most {MAX_ROWS} rows"),
                )));
            }
            match self.columns.lead(self.position, self.record.iter()) {
                Ok(None) => continue,
                Ok(Some(lead)) => return Some(Ok(lead)),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Milliseconds from the Unix epoch back to Excel's day zero (1899-12-30, the 1900 date system).
const EXCEL_EPOCH_MS: f64 = -2_209_161_600_000.0;

/// A cell as text: numbers without exponent or `.0`, dates as RFC 3339 (UTC).
fn cell_text(cell: &calamine::Data) -> String {
    use calamine::Data;
    match cell {
        Data::Empty | Data::Error(_) => String::new(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Bool(b) => b.to_string(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => format!("{f}"),
        Data::DateTime(dt) => {
            let ms = (EXCEL_EPOCH_MS + dt.as_f64() * 86_400_000.0).round() as i64;
            match jiff::Timestamp::from_millisecond(ms) {
                Ok(ts) if dt.is_datetime() => format!("{ts:.0}"),
                _ => dt.as_f64().to_string(),
            }
        }
    }
}

/// Reads the first sheet of an XLSX workbook.
pub fn read_xlsx(bytes: &[u8]) -> Result<Vec<RawLead>, Invalid> {
    use calamine::Reader;
    let unreadable = |e: String| Invalid::new("invalid_file", format!("the XLSX file could not be read: {e}"));
    let mut workbook =
        calamine::open_workbook_auto_from_rs(std::io::Cursor::new(bytes)).map_err(|e| unreadable(e.to_string()))?;
    let range = match workbook.worksheet_range_at(0) {
        Some(Ok(range)) => range,
        Some(Err(e)) => return Err(unreadable(e.to_string())),
        None => return Err(Invalid::new("invalid_file", "the workbook has no sheet")),
    };
    let mut rows = range.rows();
    let headers: Vec<String> = rows
        .next()
        .map(|r| r.iter().map(cell_text).collect())
        .unwrap_or_default();
    let columns = Columns::from_headers(&headers)?;
    if range.height().saturating_sub(1) > MAX_ROWS {
        return Err(Invalid::new(
            "too_many_rows",
            format!("a file holds at most {MAX_ROWS} rows"),
        ));
    }
    let mut leads = Vec::new();
    for (i, row) in rows.enumerate() {
        if let Some(lead) = columns.lead(i + 1, row.iter().map(cell_text))? {
            leads.push(lead);
        }
    }
    Ok(leads)
}

/// The columns of a lead file, read from its header row.
pub struct Columns(Vec<Column>);

impl Columns {
    pub fn from_headers(headers: &[String]) -> Result<Self, Invalid> {
        let mut columns = Vec::with_capacity(headers.len());
        let mut seen = HashSet::new();
        for header in headers {
            let key = header_key(header);
            let column = match key.as_str() {
                "" => Column::Ignored,
                "phone_number" | "phone" => Column::Phone,
                "timezone" => Column::Timezone,
                _ => Column::Variable(header.trim().to_string()),
            };
            let identity = match &column {
                Column::Ignored => None,
                Column::Phone => Some("phone_number".to_string()),
                Column::Timezone => Some("timezone".to_string()),
                Column::Variable(name) => Some(name.clone()),
            };
            if let Some(identity) = identity
                && !seen.insert(identity.clone())
            {
                return Err(invalid_header(format!("the header {identity} is used twice")));
            }
            columns.push(column);
        }
        if !columns.iter().any(|c| matches!(c, Column::Phone)) {
            return Err(invalid_header(
                "the file has no phone_number column (accepted: phone_number, Phone Number, phone)",
            ));
        }
        Ok(Self(columns))
    }

    /// One data row as a lead; `None` for a blank row. A value under an empty header (or past the last
    /// header) is an error: the file's columns are not what its header says.
    pub fn lead<S: AsRef<str>>(
        &self,
        position: usize,
        cells: impl IntoIterator<Item = S>,
    ) -> Result<Option<RawLead>, Invalid> {
        let mut lead = RawLead {
            position,
            phone_number: None,
            variables: Map::new(),
            timezone: None,
        };
        let mut blank = true;
        for (i, cell) in cells.into_iter().enumerate() {
            let value = cell.as_ref().trim();
            blank &= value.is_empty();
            match self.0.get(i) {
                Some(Column::Phone) if !value.is_empty() => lead.phone_number = Some(value.to_string()),
                Some(Column::Timezone) if !value.is_empty() => lead.timezone = Some(value.to_string()),
                Some(Column::Variable(name)) => {
                    lead.variables.insert(name.clone(), Value::String(value.to_string()));
                }
                Some(Column::Ignored) | None if !value.is_empty() => {
                    return Err(invalid_header(format!("column {} has values but no header", i + 1)));
                }
                _ => {}
            }
        }
        Ok((!blank).then_some(lead))
    }
}

/// Variables sent as JSON: strings, numbers and booleans become text; a null is an empty value.
pub fn variables_from_json(position: usize, map: Map<String, Value>) -> Result<Map<String, Value>, Invalid> {
    let mut variables = Map::new();
    for (key, value) in map {
        let text = match value {
            Value::String(s) => s,
            Value::Null => String::new(),
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            _ => {
                return Err(Invalid::new(
                    "validation_failed",
                    format!("lead {position}: metadata.{key} must be a string, number or boolean"),
                ));
            }
        };
        variables.insert(key.trim().to_string(), Value::String(text));
    }
    Ok(variables)
}

/// Row checks: phone to E.164, destination country, time zone and size limits.
pub fn check_row(
    raw: RawLead,
    default_country: Option<&str>,
    allowed_countries: Option<&HashSet<String>>,
) -> Result<LeadCandidate, (RowReason, usize, Option<String>)> {
    let fail = |reason, raw: &RawLead| Err((reason, raw.position, raw.phone_number.clone()));
    if raw.variables.len() > MAX_VARIABLES {
        return fail(RowReason::TooManyColumns, &raw);
    }
    let too_long = |s: &str| s.chars().count() > MAX_CELL_CHARS;
    if raw.variables.values().any(|v| v.as_str().is_some_and(too_long))
        || raw.phone_number.as_deref().is_some_and(too_long)
    {
        return fail(RowReason::ValueTooLong, &raw);
    }
    let Some(text) = raw.phone_number.as_deref() else {
        return fail(RowReason::MissingPhoneNumber, &raw);
    };
    let Some(phone) = phone::normalize(text, default_country) else {
        return fail(RowReason::InvalidPhoneNumber, &raw);
    };
    if let Some(allowed) = allowed_countries
        && !phone.country.as_ref().is_some_and(|c| allowed.contains(c))
    {
        return fail(RowReason::UnsupportedDestinationCountry, &raw);
    }
    if raw.timezone.as_deref().is_some_and(|tz| !is_valid_timezone(tz)) {
        return fail(RowReason::InvalidTimezone, &raw);
    }
    Ok(LeadCandidate {
        position: raw.position,
        phone,
        variables: raw.variables,
        timezone: raw.timezone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bom_semicolons_and_counts_blank_rows() {
        let file = "\u{feff}Phone;Name;Score\n'+1 (201) 555-0111;Noel;72\n+1 201.555.0112;Olive;55\n\n12015550113;Pat;91\n1.20156E+10;Rae;40\n";
        let rows: Vec<RawLead> = csv_rows(file.as_bytes()).unwrap().collect::<Result<_, _>>().unwrap();
        let positions: Vec<usize> = rows.iter().map(|r| r.position).collect();
        assert_eq!(positions, [1, 2, 4, 5]);
        assert_eq!(rows[0].variables.get("Name").unwrap(), "Noel");
        assert_eq!(rows[3].phone_number.as_deref(), Some("1.20156E+10"));
    }

    #[test]
    fn reads_xlsx_numbers_and_dates() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/leads/numeric_phones.xlsx"
        ))
        .unwrap();
        let rows = read_xlsx(&bytes).unwrap();
        let phones: Vec<_> = rows.iter().map(|r| r.phone_number.clone().unwrap()).collect();
        assert_eq!(phones, ["12015550131", "12015550132", "+12015550133"]);
        let amounts: Vec<_> = rows
            .iter()
            .map(|r| r.variables["loan_amount"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(amounts, ["250000", "120000.5", "80000"]);
        assert_eq!(rows[0].variables["callback_after"], "2026-12-08T10:30:00Z");
        assert_eq!(rows[2].variables["callback_after"], "");
    }

    fn read_csv(bytes: &[u8]) -> Result<Vec<RawLead>, Invalid> {
        csv_rows(bytes)?.collect()
    }

    #[test]
    fn header_rules() {
        assert_eq!(read_csv(b"name,city\nA,B\n").unwrap_err().code, "invalid_header");
        assert_eq!(
            read_csv(b"phone,name,name\n1,A,B\n").unwrap_err().code,
            "invalid_header"
        );
        assert_eq!(read_csv(b"phone,,x\n1,A,B\n").unwrap_err().code, "invalid_header");
        let rows = read_csv(b"PHONE-NUMBER,Time Zone,timezone,\n+12015550101,a,Asia/Kolkata,\n").unwrap();
        assert_eq!(rows[0].timezone.as_deref(), Some("Asia/Kolkata"));
        assert_eq!(rows[0].variables.keys().collect::<Vec<_>>(), ["Time Zone"]);
    }

    #[test]
    fn row_checks_name_the_reason() {
        let raw = |phone: Option<&str>, tz: Option<&str>| RawLead {
            position: 1,
            phone_number: phone.map(String::from),
            variables: Map::new(),
            timezone: tz.map(String::from),
        };
        assert_eq!(
            check_row(raw(None, None), None, None).unwrap_err().0,
            RowReason::MissingPhoneNumber
        );
        assert_eq!(
            check_row(raw(Some("+999123456789"), None), None, None).unwrap_err().0,
            RowReason::InvalidPhoneNumber
        );
        assert_eq!(
            check_row(raw(Some("+12015550122"), Some("Mars/Olympus_Mons")), None, None)
                .unwrap_err()
                .0,
            RowReason::InvalidTimezone
        );
        let only_in: HashSet<String> = ["IN".to_string()].into();
        assert_eq!(
            check_row(raw(Some("+12015550122"), None), None, Some(&only_in))
                .unwrap_err()
                .0,
            RowReason::UnsupportedDestinationCountry
        );
        assert_eq!(
            check_row(raw(Some("9876543210"), None), Some("IN"), Some(&only_in))
                .unwrap()
                .phone
                .number,
            "+919876543210"
        );
    }
}
