// Prints the case data the Rust tokenize plugin relies on, from this rustc's std, as lines:
//   U <unicode version>
//   L <code point> <lowercase code points...>     (chars whose to_lowercase is not themselves)
//   C <code point>                                  (Cased: Lowercase, Uppercase or titlecase)
// Read by gen_tables.py. Build and run: rustc -O dump_case.rs -o /tmp/dump_case && /tmp/dump_case
fn main() {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let (major, minor, update) = char::UNICODE_VERSION;
    writeln!(out, "U {major}.{minor}.{update}").unwrap();
    for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
        let lower: Vec<char> = c.to_lowercase().collect();
        if lower != [c] {
            let cps: Vec<String> = lower.iter().map(|l| (*l as u32).to_string()).collect();
            writeln!(out, "L {} {}", c as u32, cps.join(" ")).unwrap();
        }
        let upper: Vec<char> = c.to_uppercase().collect();
        if c.is_lowercase() || c.is_uppercase() || lower != [c] || upper != [c] {
            writeln!(out, "C {}", c as u32).unwrap();
        }
    }
}
