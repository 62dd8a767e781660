//! The targets issue 17 set for what a message costs, and whether a run met them: each
//! bench prints its own after its table, so a run says where it stands by itself rather
//! than leaving the comparison to whoever reads it.

/// Which way a target points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    /// The figure must be at least this.
    AtLeast(f64),
    /// The figure must be at most this.
    AtMost(f64),
}

impl Goal {
    /// Whether `figure` meets the goal; a figure that was not measured (NaN) does not.
    pub fn met_by(self, figure: f64) -> bool {
        match self {
            Goal::AtLeast(goal) => figure >= goal,
            Goal::AtMost(goal) => figure <= goal,
        }
    }
}

/// A target, and what this run measured of it.
#[derive(Clone, Debug)]
pub struct Target {
    what: String,
    goal: Goal,
    unit: &'static str,
    measured: f64,
}

impl Target {
    /// The target `what` (what is measured, and against what), its goal in `unit` (`"x"`
    /// for a ratio, `" ns"`, `" µs"`), and this run's figure.
    pub fn new(what: impl Into<String>, goal: Goal, unit: &'static str, measured: f64) -> Self {
        Self { what: what.into(), goal, unit, measured }
    }

    /// Whether this run met it, judged on the figure as printed (to two decimals), so
    /// that 3.00004 allocations a message, a few of a run's set-up among 200,000
    /// messages, count as the 3.00 shown.
    pub fn met(&self) -> bool {
        self.goal.met_by((self.measured * 100.0).round() / 100.0)
    }

    fn goal_text(&self) -> String {
        match self.goal {
            Goal::AtLeast(goal) => format!("at least {goal:.2}{}", self.unit),
            Goal::AtMost(goal) => format!("at most {goal:.2}{}", self.unit),
        }
    }
}

/// Prints `targets` as a Markdown table: each target, its goal, this run's figure, and
/// whether the run met it.
pub fn print_targets(targets: &[Target]) {
    println!();
    println!("issue 17's targets, this run:");
    println!("| target | goal | this run | |");
    println!("|---|---|---|---|");
    for t in targets {
        let verdict = if t.met() { "met" } else { "not met" };
        println!("| {} | {} | {:.2}{} | {verdict} |", t.what, t.goal_text(), t.measured, t.unit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_goal_is_met_on_its_own_side_only() {
        assert!(Goal::AtLeast(0.95).met_by(0.95) && !Goal::AtLeast(0.95).met_by(0.94));
        assert!(Goal::AtMost(150.0).met_by(150.0) && !Goal::AtMost(150.0).met_by(150.1));
        assert!(!Goal::AtLeast(0.9).met_by(f64::NAN) && !Goal::AtMost(1.0).met_by(f64::NAN));
    }

    #[test]
    fn a_target_is_judged_on_the_figure_printed() {
        assert!(Target::new("allocations", Goal::AtMost(3.0), "", 3.004).met());
        assert!(!Target::new("allocations", Goal::AtMost(3.0), "", 3.006).met());
        assert!(!Target::new("ratio", Goal::AtLeast(0.95), "x", 0.944).met());
    }
}
