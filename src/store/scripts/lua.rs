//! The Lua script engine: scripts embedded from `lua/`, `--!include` fragments inlined from
//! `lua/include/`, each addressed by the SHA1 of its assembled text, versioned in its header and
//! recorded in `lua/scripts.lock` for the platform team's audit.

use include_dir::{include_dir, Dir};

static LUA: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/lua");

/// One assembled script.
#[derive(Debug)]
pub struct Script {
    pub name: &'static str,
    /// From the header line `-- <name>, version: N`; bumped with every change of the text.
    pub version: u32,
    /// The text sent by `SCRIPT LOAD`, fragments inlined.
    pub body: String,
    /// Lowercase hex SHA1 of `body`, as `EVALSHA` wants it.
    pub sha1: String,
    /// Whether the script writes the gateway projection (its failures are counted apart).
    pub writes_projection: bool,
    /// The header's contract: KEYS and ARGV slot names in order, and the kinds of key it derives.
    pub header: Header,
}

/// A script's KEYS/ARGV contract as its header states it (`-- KEYS[i] kind: ...`,
/// `-- ARGV[i] name: ...`, `-- Derives: kind (...), kind (...)` or `nothing`). KEYS names are
/// key kinds of [`super::keys::Keys::kind_of`]; the typed wrappers name every slot they fill, and
/// the test bench checks every key a script touches against this list.
///
/// A slot named `name?` is optional: optional slots come last, in KEYS and ARGV alike, and a call
/// passes all of them or none (the generated arity check accepts exactly those two shapes). The
/// create and verify scripts carry the client's admission that way: the single-tag layout passes
/// it, the partitioned layout admits apart and passes none.
#[derive(Debug, Default)]
pub struct Header {
    pub keys: Vec<String>,
    pub args: Vec<String>,
    pub derives: Vec<String>,
    /// How many of `keys` and of `args` every call passes (the rest are optional).
    pub required: (usize, usize),
}

impl Header {
    /// The (KEYS, ARGV) counts a call may have: all slots, or only the required ones.
    pub fn arities(&self) -> Vec<(usize, usize)> {
        let all = (self.keys.len(), self.args.len());
        if self.required == all {
            vec![all]
        } else {
            vec![all, self.required]
        }
    }

    fn parse(name: &str, body: &str) -> Self {
        let mut header = Header::default();
        let mut optional = (Vec::new(), Vec::new());
        let slot = |line: &str, tag: &str, list: &mut Vec<String>, optional: &mut Vec<bool>| {
            let Some(rest) = line.strip_prefix(tag) else {
                return;
            };
            let (index, rest) = rest.split_once("] ").unwrap_or_else(|| {
                panic!("lua/{name}.lua: header line `{line}` must read `{tag}N] name ...`")
            });
            assert_eq!(
                index.parse::<usize>().ok(),
                Some(list.len() + 1),
                "lua/{name}.lua: header slots must be numbered 1, 2, ... in order"
            );
            let slot_name = rest.split([':', ' ']).next().unwrap_or_default();
            let (slot_name, is_optional) = match slot_name.strip_suffix('?') {
                Some(required_name) => (required_name, true),
                None => (slot_name, false),
            };
            assert!(
                is_optional || !optional.contains(&true),
                "lua/{name}.lua: `{line}`: optional slots come last"
            );
            list.push(slot_name.to_owned());
            optional.push(is_optional);
        };
        for line in body
            .lines()
            .take_while(|l| l.starts_with("--") || l.starts_with("#!"))
        {
            slot(line, "-- KEYS[", &mut header.keys, &mut optional.0);
            slot(line, "-- ARGV[", &mut header.args, &mut optional.1);
            if let Some(rest) = line.strip_prefix("-- Derives: ") {
                header.derives = rest
                    .split(',')
                    .filter_map(|d| d.split_whitespace().next())
                    .filter(|d| *d != "nothing")
                    .map(str::to_owned)
                    .collect();
            }
        }
        assert!(
            !header.keys.is_empty(),
            "lua/{name}.lua: the header names no KEYS"
        );
        let required = |flags: &[bool]| flags.iter().filter(|o| !**o).count();
        header.required = (required(&optional.0), required(&optional.1));
        assert_eq!(
            header.required.0 == header.keys.len(),
            header.required.1 == header.args.len(),
            "lua/{name}.lua: optional slots come in KEYS and ARGV together"
        );
        header
    }
}

/// Assembles `lua/<name>.lua`. The scripts are compiled in, so a malformed one is a build
/// defect: this panics with the reason, and the unit tests below run it for every script.
pub(super) fn assemble(name: &'static str) -> Script {
    let file = LUA
        .get_file(format!("{name}.lua"))
        .unwrap_or_else(|| panic!("lua/{name}.lua is missing"));
    let source = file
        .contents_utf8()
        .unwrap_or_else(|| panic!("lua/{name}.lua is not UTF-8"));
    let header = Header::parse(name, source);
    let body = inline_includes(name, source, &arity_check(name, &header));
    let version = parse_version(name, &body);
    let sha1 = sha1_smol::Sha1::from(&body).digest().to_string();
    let writes_projection = body
        .lines()
        .any(|l| l.trim_start().starts_with("projection_write("));
    Script {
        name,
        version,
        body,
        sha1,
        writes_projection,
        header,
    }
}

/// The script's first statement, generated from its header: a call with another number of KEYS
/// or ARGV than the header names is refused before anything is read (a missing last ARGV would
/// otherwise surface as a nil deep inside the script).
fn arity_check(name: &str, header: &Header) -> String {
    match header.arities()[..] {
        [(keys, args)] => format!(
            "if #KEYS ~= {keys} or #ARGV ~= {args} then\n  \
             return redis.error_reply('ERR {name} takes {keys} KEYS and {args} ARGV')\nend\n"
        ),
        [(keys, args), (required_keys, required_args)] => format!(
            "if not ((#KEYS == {keys} and #ARGV == {args}) or \
             (#KEYS == {required_keys} and #ARGV == {required_args})) then\n  \
             return redis.error_reply('ERR {name} takes {keys} KEYS and {args} ARGV \
             (or {required_keys} and {required_args})')\nend\n"
        ),
        _ => unreachable!("one or two arities"),
    }
}

/// Inlines `--!include <fragment>.lua: helper, helper, ...` lines, with `prologue` before the
/// first of them (or before the first statement). A fragment is a sequence of
/// units separated by blank lines, each declaring one `local function NAME` or `local NAME =`
/// (its comment lines above it belong to it); the file's opening comment block is its
/// description. Only the units a script names are inlined, in the fragment's order, so the
/// audited text holds no unused code, and a script must declare every helper it uses (luacheck
/// flags an undeclared one as an undefined global).
fn inline_includes(name: &str, source: &str, prologue: &str) -> String {
    let mut body = String::with_capacity(source.len() * 3);
    let mut prologue = Some(prologue);
    for line in source.lines() {
        let header = line.starts_with("#!") || (line.starts_with("--") && !line.starts_with("--!"));
        if !header {
            if let Some(text) = prologue.take() {
                body.push_str(text);
            }
        }
        let Some(include) = line.strip_prefix("--!include ") else {
            body.push_str(line);
            body.push('\n');
            continue;
        };
        let (fragment, helpers) = include.split_once(':').unwrap_or_else(|| {
            panic!("lua/{name}.lua: `--!include {include}` must name its helpers after a `:`")
        });
        let path = format!("include/{}", fragment.trim());
        let text = LUA
            .get_file(&path)
            .and_then(|f| f.contents_utf8())
            .unwrap_or_else(|| panic!("lua/{name}.lua includes lua/{path}, which is missing"));
        let units = fragment_units(&path, text);
        let wanted: Vec<&str> = helpers.split(',').map(str::trim).collect();
        for helper in &wanted {
            assert!(
                units.iter().any(|(unit, _)| unit == helper),
                "lua/{name}.lua wants `{helper}` from lua/{path}, which does not define it"
            );
        }
        for (unit, text) in &units {
            if wanted.contains(&unit.as_str()) {
                body.push_str(text);
                body.push('\n');
            }
        }
    }
    body
}

/// The named units of a fragment: (declared name, text including its comment lines).
fn fragment_units(path: &str, text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .map(|block| block.trim_matches(|c| c == '\n'))
        .filter(|block| !block.is_empty())
        .skip(1) // the fragment's description
        .map(|block| {
            let declared = block
                .lines()
                .find(|l| !l.starts_with("--"))
                .and_then(|l| {
                    l.strip_prefix("local function ")
                        .or_else(|| l.strip_prefix("local "))
                })
                .and_then(|rest| rest.split(['(', ' ', '=']).next())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| {
                    panic!("lua/{path}: every block after the description declares one local")
                });
            (declared.to_owned(), format!("{block}\n"))
        })
        .collect()
}

fn parse_version(name: &str, body: &str) -> u32 {
    let mut lines = body.lines();
    let shebang = lines.next().unwrap_or_default();
    assert!(
        shebang.starts_with("#!lua"),
        "lua/{name}.lua must start with a `#!lua` shebang"
    );
    let header = lines.next().unwrap_or_default();
    header
        .strip_prefix(&format!("-- {name}, version: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("lua/{name}.lua: second line must be `-- {name}, version: N`"))
}

#[cfg(test)]
mod tests;
