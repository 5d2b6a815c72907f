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
    /// The header's contract: KEYS and ARGV slot names in order.
    pub header: Header,
}

/// A script's KEYS/ARGV contract as its header states it (`-- KEYS[i] kind: ...`,
/// `-- ARGV[i] name: ...`). KEYS names are key kinds of [`super::keys::Keys::kind_of`]; the
/// typed wrappers name every slot they fill, and the test bench checks every key a script
/// touches against the call's KEYS.
///
/// A slot named `name?` is optional: optional slots come after the fixed ones, in KEYS and ARGV
/// alike, and a call passes all of them or none. The create and verify scripts carry the
/// client's admission that way: the single-tag layout passes it, the partitioned layout admits
/// apart and passes none.
///
/// A slot numbered `N..` starts the planned tail (plan, then commit: `lua/include/planned.lua`):
/// `-- KEYS[N..] kind, kind: ...` names the keys of one planned id and `-- ARGV[M..] name: ...`
/// the id; a call passes any number of ids, each with its keys, after every other slot.
///
/// The generated prologue checks the call's shape and sets `SHAPE_OPTIONAL` (the optional
/// slots are there), `SHAPE_PLANNED` (how many planned ids) and `SHAPE_PLANNED_KEY` /
/// `SHAPE_PLANNED_ARG` (where the tail starts) for scripts that have either.
#[derive(Debug, Default)]
pub struct Header {
    pub keys: Vec<String>,
    pub args: Vec<String>,
    /// How many of `keys` and of `args` every call passes (the rest are optional).
    pub required: (usize, usize),
    /// The planned tail: the KEYS kinds of one planned id, and its ARGV names (both empty when
    /// the script plans nothing).
    pub planned: (Vec<String>, Vec<String>),
}

impl Header {
    /// The (KEYS, ARGV) counts before the planned tail a call may have: all slots, or only the
    /// required ones.
    pub fn arities(&self) -> Vec<(usize, usize)> {
        let all = (self.keys.len(), self.args.len());
        if self.required == all {
            vec![all]
        } else {
            vec![all, self.required]
        }
    }

    /// Whether a call of `keys` KEYS and `args` ARGV has a shape the header allows.
    pub fn accepts(&self, keys: usize, args: usize) -> bool {
        self.shape(keys, args).is_some()
    }

    /// The (KEYS, ARGV) counts before the planned tail of a call of `keys` KEYS and `args` ARGV,
    /// if the header allows its shape.
    pub fn shape(&self, keys: usize, args: usize) -> Option<(usize, usize)> {
        let (tail_keys, tail_args) = (self.planned.0.len(), self.planned.1.len());
        self.arities().into_iter().find(|&(k, a)| {
            match (keys.checked_sub(k), args.checked_sub(a)) {
                (Some(0), Some(0)) => true,
                (Some(nk), Some(na)) if tail_keys > 0 => {
                    nk % tail_keys == 0 && na * tail_keys == nk * tail_args
                }
                _ => false,
            }
        })
    }

    /// The slot names of a call of `keys` KEYS and `args` ARGV, in order (KEYS, ARGV), if the
    /// header allows its shape: the fixed slots, then the planned tail's names repeated.
    pub fn slot_names(&self, keys: usize, args: usize) -> Option<(Vec<&str>, Vec<&str>)> {
        let (k, a) = self.shape(keys, args)?;
        Some((
            names(keys, k, &self.keys, &self.planned.0),
            names(args, a, &self.args, &self.planned.1),
        ))
    }

    /// Whether a call whose slots carry these names, in order, fits the header.
    pub fn fits(&self, keys: &[&str], args: &[&str]) -> bool {
        self.slot_names(keys.len(), args.len())
            .is_some_and(|(k, a)| k == keys && a == args)
    }

    fn parse(name: &str, body: &str) -> Self {
        let mut header = Header::default();
        let mut optional = (Vec::new(), Vec::new());
        let mut slot = |line: &str, tag: &str, is_keys: bool| {
            let Some(rest) = line.strip_prefix(tag) else {
                return;
            };
            let (list, optional, tail) = if is_keys {
                (&mut header.keys, &mut optional.0, &mut header.planned.0)
            } else {
                (&mut header.args, &mut optional.1, &mut header.planned.1)
            };
            let (index, rest) = rest.split_once("] ").unwrap_or_else(|| {
                panic!("lua/{name}.lua: header line `{line}` must read `{tag}N] name ...`")
            });
            assert!(
                tail.is_empty(),
                "lua/{name}.lua: `{line}`: the planned tail (`N..`) comes last"
            );
            let (index, planned) = match index.strip_suffix("..") {
                Some(index) => (index, true),
                None => (index, false),
            };
            assert_eq!(
                index.parse::<usize>().ok(),
                Some(list.len() + 1),
                "lua/{name}.lua: header slots must be numbered 1, 2, ... in order"
            );
            let names = rest.split(':').next().unwrap_or_default();
            if planned {
                tail.extend(names.split(',').map(|n| n.trim().to_owned()));
                return;
            }
            let slot_name = names.split(' ').next().unwrap_or_default();
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
            slot(line, "-- KEYS[", true);
            slot(line, "-- ARGV[", false);
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
        let (tail_keys, tail_args) = (header.planned.0.len(), header.planned.1.len());
        assert_eq!(
            tail_keys == 0,
            tail_args == 0,
            "lua/{name}.lua: a planned tail names its KEYS and its ARGV"
        );
        if let [(k, a), (rk, ra)] = header.arities()[..] {
            // The two shapes must never count alike, or the script could not tell them apart.
            let ambiguous = tail_keys > 0
                && (k - rk) % tail_keys == 0
                && (a - ra) == (k - rk) / tail_keys * tail_args;
            assert!(!ambiguous, "lua/{name}.lua: its two shapes can count alike");
        }
        header
    }
}

/// `count` slot names: the first `fixed` from `slots`, then `tail`'s repeated.
fn names<'a>(count: usize, fixed: usize, slots: &'a [String], tail: &'a [String]) -> Vec<&'a str> {
    (0..count)
        .map(|i| match i.checked_sub(fixed) {
            None => slots[i].as_str(),
            Some(j) => tail[j % tail.len()].as_str(),
        })
        .collect()
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

/// Assembles a script from `source` as `assemble` does one from `lua/` (header, generated
/// prologue, includes inlined): for tests that run a probe of the include fragments on Redis.
#[doc(hidden)]
pub fn assemble_source(name: &str, source: &str) -> String {
    let header = Header::parse(name, source);
    inline_includes(name, source, &arity_check(name, &header))
}

/// The script's first statements, generated from its header: a call with another number of
/// KEYS or ARGV than the header allows is refused before anything is read (a missing last ARGV
/// would otherwise surface as a nil deep inside the script). A script with optional slots or a
/// planned tail also learns its call's shape (see [`Header`]).
fn arity_check(name: &str, header: &Header) -> String {
    let arities = header.arities();
    let (tail_keys, tail_args) = (header.planned.0.len(), header.planned.1.len());
    if let ([(keys, args)], 0) = (&arities[..], tail_keys) {
        return format!(
            "if #KEYS ~= {keys} or #ARGV ~= {args} then\n  \
             return redis.error_reply('ERR {name} takes {keys} KEYS and {args} ARGV')\nend\n"
        );
    }
    let shapes: Vec<String> = arities
        .iter()
        .enumerate()
        .map(|(i, (k, a))| format!("{{{k}, {a}, {}}}", i == 0 && arities.len() == 2))
        .collect();
    let (fits, count) = if tail_keys == 0 {
        ("k == 0 and a == 0".to_owned(), "0".to_owned())
    } else {
        (
            format!("k >= 0 and k % {tail_keys} == 0 and a * {tail_keys} == k * {tail_args}"),
            format!("k / {tail_keys}"),
        )
    };
    let expected = arities
        .iter()
        .map(|(k, a)| format!("{k}+{a}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let per_id = if tail_keys == 0 {
        String::new()
    } else {
        format!(", then {tail_keys}+{tail_args} per id")
    };
    format!(
        "local SHAPE_OPTIONAL, SHAPE_PLANNED, SHAPE_PLANNED_KEY, SHAPE_PLANNED_ARG\n\
         for _, shape in ipairs({{{}}}) do\n  \
         local k, a = #KEYS - shape[1], #ARGV - shape[2]\n  \
         if not SHAPE_PLANNED and {fits} then\n    \
         SHAPE_OPTIONAL, SHAPE_PLANNED = shape[3], {count}\n    \
         SHAPE_PLANNED_KEY, SHAPE_PLANNED_ARG = shape[1] + 1, shape[2] + 1\n  \
         end\nend\n\
         if not SHAPE_PLANNED then\n  \
         return redis.error_reply('ERR {name} takes {expected}{per_id}')\nend\n",
        shapes.join(", ")
    )
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
