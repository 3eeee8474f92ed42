// CSV built in the page (RFC 4180, CRLF). A cell a spreadsheet would run as a formula (=, +, -, @ first)
// gets a leading apostrophe; an E.164 number is left alone, as a number is no formula.

const FORMULA = /^[=+\-@\t\r]/;
const E164 = /^\+\d{4,15}$/;

function cell(value) {
  let text = value == null ? '' : String(value);
  if (FORMULA.test(text) && !E164.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function toCsv(header, rows) {
  return [header, ...rows].map((row) => row.map(cell).join(',')).join('\r\n') + '\r\n';
}

const DECISION_HEADER = [
  'decided_at', 'call_id', 'number', 'campaign', 'verdict', 'reason', 'failed', 'passed',
  'next_callable_at', 'rules_version',
];

export function decisionsCsv(decisions) {
  return toCsv(DECISION_HEADER, decisions.map((d) => {
    const reasons = d.reasons ?? [];
    const codes = (passed) => reasons.filter((r) => r.passed === passed).map((r) => r.code).join(' ');
    return [
      d.decided_at, d.call_id, d.number, d.campaign, d.verdict, d.reason, codes(false), codes(true),
      d.next_callable_at, d.rules_version,
    ];
  }));
}

/** A file name's stamp for now: 2026-11-23T16-00-00Z. */
export function stamp() {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z').replaceAll(':', '-');
}
