//! The README's shell commands against the tools they call: every command in
//! a fenced `sh` block is asked for `--help`, and each flag it uses must be
//! in that help, so a README that drifts from cargo-lambda, SAM, sqlx-cli or
//! the project's own xtask fails the test command.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// One command of a README code block: its words, as the shell splits them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCommand {
    pub words: Vec<String>,
}

/// Shell built-ins and plain text tools: nothing to check; and the AWS CLI,
/// which is not on PyPI (v2) nor on the project's machines, so its commands
/// in the deploy sequence cannot be asked for `--help` here.
const SKIPPED: [&str; 6] = ["export", "cd", "echo", "set", "cat", "aws"];

impl ShellCommand {
    /// The program and its subcommands: the leading words that look like
    /// names (a path, URL or flag ends them).
    pub fn command_words(&self) -> Vec<&str> {
        self.words
            .iter()
            .map(String::as_str)
            .take_while(|w| {
                w.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && w.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
            .collect()
    }

    /// The flags, without their `=value` (none after `--`: those belong to
    /// the program the command runs).
    pub fn flags(&self) -> Vec<&str> {
        self.words
            .iter()
            .take_while(|w| *w != "--")
            .filter(|w| w.starts_with('-') && w.len() > 1)
            .map(|w| w.split_once('=').map_or(w.as_str(), |(flag, _)| flag))
            .collect()
    }

    pub fn is_skipped(&self) -> bool {
        self.words
            .first()
            .is_none_or(|program| SKIPPED.contains(&program.as_str()))
    }
}

/// The commands in `markdown`'s ```sh / ```bash / ```shell blocks: lines
/// continued with `\` joined, comments dropped, `&&`, `||`, `;` and `|`
/// splitting commands, leading `NAME=value` assignments dropped.
pub fn commands(markdown: &str) -> Vec<ShellCommand> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            in_block = !in_block && matches!(lang.trim(), "sh" | "bash" | "shell");
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        for segment in split_commands(&strip_comment(&pending)) {
            let Some(words) = shlex::split(&segment) else {
                continue;
            };
            let words = substituted(words.into_iter().skip_while(|w| is_assignment_only(w)));
            if !words.is_empty() {
                out.push(ShellCommand { words });
            }
        }
        pending.clear();
    }
    out
}

/// `NAME=value`: the value, if the word is an assignment.
fn assigned(word: &str) -> Option<&str> {
    word.split_once('=').and_then(|(name, value)| {
        (!name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .then_some(value)
    })
}

/// An assignment of a plain value (not of a command's output).
fn is_assignment_only(word: &str) -> bool {
    assigned(word).is_some_and(|value| !value.starts_with("$("))
}

/// `NAME=$(cmd args)` is the command `cmd args`.
fn substituted(words: impl Iterator<Item = String>) -> Vec<String> {
    let mut words: Vec<String> = words.collect();
    let inner = words
        .first()
        .and_then(|first| assigned(first))
        .and_then(|value| value.strip_prefix("$("))
        .map(str::to_string);
    if let Some(inner) = inner {
        words[0] = inner;
        if let Some(last) = words.last_mut()
            && let Some(stripped) = last.strip_suffix(')')
        {
            *last = stripped.to_string();
        }
        words.retain(|w| !w.is_empty());
    }
    words
}

/// `line` without its comment (a `#` starting a word, outside quotes).
fn strip_comment(line: &str) -> String {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if previous.is_whitespace() => return line[..i].to_string(),
            _ => {}
        }
        previous = c;
    }
    line.to_string()
}

/// `line` split at `&&`, `||`, `;` and `|` outside quotes.
fn split_commands(line: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '&' | '|' | ';') => {
                if parts.last().is_some_and(|p| !p.trim().is_empty()) {
                    parts.push(String::new());
                }
                continue;
            }
            _ => {}
        }
        if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts.retain(|p| !p.trim().is_empty());
    parts
}

/// Does `help` name `flag` (as a whole word; `-si` as `-s` and `-i`)?
pub fn help_names(help: &str, flag: &str) -> bool {
    let whole = |flag: &str| {
        help.match_indices(flag).any(|(at, _)| {
            let before = help[..at].chars().next_back();
            let after = help[at + flag.len()..].chars().next();
            before.is_none_or(|c| !c.is_ascii_alphanumeric() && c != '-')
                && after.is_none_or(|c| !c.is_ascii_alphanumeric() && c != '-')
        })
    };
    if whole(flag) {
        return true;
    }
    // Bundled short flags.
    match flag.strip_prefix('-') {
        Some(letters) if !letters.starts_with('-') && letters.len() > 1 => letters
            .chars()
            .all(|c| c.is_ascii_alphabetic() && whole(&format!("-{c}"))),
        _ => false,
    }
}

/// Runs `--help` for every command of `README.md` under `root` and checks
/// each flag; the number of commands checked.
pub fn check(root: &std::path::Path) -> Result<usize> {
    let readme = std::fs::read_to_string(root.join("README.md")).context("reading README.md")?;
    let mut checked = 0;
    let mut problems = Vec::new();
    for command in commands(&readme).iter().filter(|c| !c.is_skipped()) {
        let words = command.command_words();
        let Some((program, subcommands)) = words.split_first() else {
            problems.push(format!("`{}`: no program name", command.words.join(" ")));
            continue;
        };
        let mut help = Command::new(program);
        help.args(subcommands).current_dir(root);
        // curl lists only its common options under a bare --help.
        if *program == "curl" {
            help.args(["--help", "all"]);
        } else {
            help.arg("--help");
        }
        let shown = format!("{} --help", words.join(" "));
        let output = help
            .output()
            .with_context(|| format!("running `{shown}`"))?;
        if !output.status.success() {
            problems.push(format!("`{shown}` failed ({})", output.status));
            continue;
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        for flag in command.flags() {
            if !help_names(&text, flag) {
                problems.push(format!(
                    "`{}`: `{shown}` has no {flag}",
                    command.words.join(" ")
                ));
            }
        }
        checked += 1;
    }
    if !problems.is_empty() {
        bail!("README commands out of date:\n  {}", problems.join("\n  "));
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"Text with `cargo fake --flag` outside a block.

```sh
cargo xtask dev    # the API on :3000
cargo sqlx prepare --workspace -- --all-targets
export DATABASE_URL=postgres://x/y
echo '{"dry_run": true}' > dry.json && cargo lambda invoke -A 127.0.0.1 \
  cleanup --data-file dry.json
RUST_LOG=debug curl -si "http://127.0.0.1:9000/v1/health?a=1&b=2" | head -1
URL=$(sam list stack-outputs --stack-name "$STACK" --output json)
```

```
layout/   not a shell block --nope
```
"#;

    #[test]
    fn commands_are_split_joined_and_stripped() {
        let found: Vec<String> = commands(SAMPLE).iter().map(|c| c.words.join(" ")).collect();
        assert_eq!(
            found,
            [
                "cargo xtask dev",
                "cargo sqlx prepare --workspace -- --all-targets",
                "export DATABASE_URL=postgres://x/y",
                "echo {\"dry_run\": true} > dry.json",
                "cargo lambda invoke -A 127.0.0.1 cleanup --data-file dry.json",
                "curl -si http://127.0.0.1:9000/v1/health?a=1&b=2",
                "head -1",
                "sam list stack-outputs --stack-name $STACK --output json",
            ]
        );
    }

    #[test]
    fn program_subcommands_and_flags_are_told_apart() {
        let all = commands(SAMPLE);
        assert_eq!(
            all[1].flags(),
            ["--workspace"],
            "after -- is another program's"
        );
        let invoke = &all[4];
        assert_eq!(invoke.command_words(), ["cargo", "lambda", "invoke"]);
        assert_eq!(invoke.flags(), ["-A", "--data-file"]);
        assert!(all[2].is_skipped() && all[3].is_skipped() && !invoke.is_skipped());
    }

    #[test]
    fn flags_must_appear_whole_in_the_help() {
        let help =
            "  -A, --invoke-address <ADDR>\n  -s, --silent\n  -i, --include\n  --data-file-x";
        assert!(help_names(help, "-A"));
        assert!(help_names(help, "--invoke-address"));
        assert!(help_names(help, "-si"), "bundled short flags");
        assert!(!help_names(help, "-a"), "case matters: -a is not -A");
        assert!(
            !help_names(help, "--data-file"),
            "a longer flag does not count"
        );
        assert!(!help_names(help, "--invoke"));
    }
}
