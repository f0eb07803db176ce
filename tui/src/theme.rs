//! Styles, in colour or in monochrome for terminals without colours (`NO_COLOR`, `TERM=dumb`,
//! terminals of fewer than eight colours): there, emphasis is bold, reversed, underlined or dim
//! text, so every state stays distinguishable.

use ratatui::style::{Color, Modifier, Style};

use crate::model::{Category, Level, Stage};

/// How many colours the terminal shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorSupport {
    /// None (or the user asked for none): monochrome styles.
    Monochrome,
    /// The 8/16 ANSI colours (what the colour theme uses).
    Ansi,
}

impl ColorSupport {
    /// Decide from environment variables, given as a lookup so that tests need not touch the
    /// process environment: `NO_COLOR` (any non-empty value, <https://no-color.org>) and a
    /// missing, `dumb` or colourless `TERM` give monochrome; `COLORTERM` or a known colour
    /// terminal gives colours.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Self {
        if var("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            return ColorSupport::Monochrome;
        }
        if var("COLORTERM").is_some_and(|v| !v.is_empty()) {
            return ColorSupport::Ansi;
        }
        let term = var("TERM").unwrap_or_default();
        let term = term.as_str();
        // Terminals with fewer than eight colours (or none): the DEC VTs and printing
        // terminals, and `-m` (monochrome) terminfo variants.
        let colourless = term.is_empty()
            || term == "dumb"
            || term == "unknown"
            || term.starts_with("vt")
            || term.ends_with("-m")
            || term.ends_with("-mono");
        if colourless {
            ColorSupport::Monochrome
        } else {
            ColorSupport::Ansi
        }
    }

    /// Decide from this process's environment.
    pub fn detect() -> Self {
        Self::from_env(|k| std::env::var(k).ok())
    }
}

/// The styles every screen draws with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theme {
    color: bool,
}

impl Theme {
    /// The theme for a terminal's colour support.
    pub fn new(support: ColorSupport) -> Self {
        Theme {
            color: support == ColorSupport::Ansi,
        }
    }

    /// Colours.
    pub fn colour() -> Self {
        Theme { color: true }
    }

    /// No colours: bold, reverse, underline and dim only.
    pub fn monochrome() -> Self {
        Theme { color: false }
    }

    /// Whether colours are used.
    pub fn has_colour(&self) -> bool {
        self.color
    }

    fn pick(&self, colour: Style, mono: Style) -> Style {
        if self.color { colour } else { mono }
    }

    /// Plain text.
    pub fn text(&self) -> Style {
        Style::default()
    }

    /// Secondary text (labels, hints).
    pub fn dim(&self) -> Style {
        self.pick(
            Style::default().fg(Color::DarkGray),
            Style::default().add_modifier(Modifier::DIM),
        )
    }

    /// Titles and headers.
    pub fn title(&self) -> Style {
        self.pick(
            Style::default()
                .fg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
            Style::default().add_modifier(Modifier::BOLD),
        )
    }

    /// The active tab, the selected row.
    pub fn selected(&self) -> Style {
        self.pick(
            Style::default()
                .bg(Color::Blue)
                .fg(Color::White)
                .add_modifier(Modifier::BOLD),
            Style::default().add_modifier(Modifier::REVERSED),
        )
    }

    /// A key in the hints.
    pub fn key(&self) -> Style {
        self.pick(
            Style::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
            Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
        )
    }

    /// The progress gauge.
    pub fn gauge(&self) -> Style {
        self.pick(
            Style::default().fg(Color::Green).bg(Color::Black),
            Style::default(),
        )
    }

    /// Errors.
    pub fn error(&self) -> Style {
        self.pick(
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            Style::default().add_modifier(Modifier::BOLD),
        )
    }

    /// A category's counts.
    pub fn category(&self, c: Category) -> Style {
        match c {
            Category::Done => self.pick(Style::default().fg(Color::Green), Style::default()),
            Category::InProgress => self.pick(
                Style::default().fg(Color::Yellow),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Category::Failed => self.error(),
            Category::Waiting | Category::Skipped => self.dim(),
        }
    }

    /// A stage in the table.
    pub fn stage(&self, s: Stage) -> Style {
        match s {
            Stage::Retrying => self.pick(
                Style::default().fg(Color::Magenta),
                Style::default().add_modifier(Modifier::ITALIC),
            ),
            _ => self.category(s.category()),
        }
    }

    /// A log level.
    pub fn level(&self, l: Level) -> Style {
        match l {
            Level::Info => self.text(),
            Level::Warn => self.pick(
                Style::default().fg(Color::Yellow),
                Style::default().add_modifier(Modifier::UNDERLINED),
            ),
            Level::Error => self.error(),
        }
    }

    /// Dialog borders.
    pub fn dialog(&self) -> Style {
        self.pick(
            Style::default().fg(Color::Yellow),
            Style::default().add_modifier(Modifier::BOLD),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn colour_support_from_the_environment() {
        use ColorSupport::*;
        assert_eq!(
            ColorSupport::from_env(env(&[("TERM", "xterm-256color")])),
            Ansi
        );
        assert_eq!(ColorSupport::from_env(env(&[("TERM", "linux")])), Ansi);
        assert_eq!(
            ColorSupport::from_env(env(&[("TERM", "xterm-256color"), ("NO_COLOR", "1")])),
            Monochrome
        );
        // An empty NO_COLOR does not count (no-color.org).
        assert_eq!(
            ColorSupport::from_env(env(&[("TERM", "screen"), ("NO_COLOR", "")])),
            Ansi
        );
        assert_eq!(ColorSupport::from_env(env(&[("TERM", "dumb")])), Monochrome);
        assert_eq!(
            ColorSupport::from_env(env(&[("TERM", "vt100")])),
            Monochrome
        );
        assert_eq!(
            ColorSupport::from_env(env(&[("TERM", "xterm-mono")])),
            Monochrome
        );
        assert_eq!(ColorSupport::from_env(env(&[])), Monochrome);
        assert_eq!(
            ColorSupport::from_env(env(&[("TERM", "dumb"), ("COLORTERM", "truecolor")])),
            Ansi
        );
    }

    #[test]
    fn monochrome_uses_no_colour_at_all() {
        let t = Theme::monochrome();
        let styles = [
            t.dim(),
            t.title(),
            t.selected(),
            t.key(),
            t.gauge(),
            t.error(),
            t.dialog(),
            t.stage(Stage::Retrying),
            t.level(Level::Warn),
        ];
        for s in styles {
            assert_eq!((s.fg, s.bg), (None, None), "{s:?}");
        }
        // And the selection is still visible.
        assert!(t.selected().add_modifier.contains(Modifier::REVERSED));
        assert!(Theme::colour().selected().bg.is_some());
    }
}
