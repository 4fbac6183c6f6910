//! Lanes on a queue's page: which lane a tab lists (`?lane=high`), and the
//! links between the lanes of a queue that uses more than one.

use maud::{Markup, html};
use millrace_core::Priority;

use crate::error::{PageError, PageResult};
use crate::layout::{self, queue_url};

/// The lane a form or a tab's query names (`high`, `default`, `low`; the
/// default lane when empty or absent).
pub(crate) fn parse_lane(lane: Option<&str>) -> PageResult<Priority> {
    match lane {
        None | Some("") => Ok(Priority::Default),
        Some(l) => Priority::from_wire(l).ok_or_else(|| {
            PageError::BadRequest(format!("unknown lane {l:?}: use high, default or low"))
        }),
    }
}

/// The `lane` query pair of a link to lane `lane` (none for the default
/// lane, whose links are the queue's own).
pub(crate) fn lane_pair(lane: Priority) -> (&'static str, &'static str) {
    match lane {
        Priority::Default => ("lane", ""),
        l => ("lane", l.as_str()),
    }
}

/// Links to tab `rest` of each of `lanes`, `current` marked; nothing for a
/// queue that uses only the default lane.
pub(crate) fn picker(name: &str, rest: &str, lanes: &[Priority], current: Priority) -> Markup {
    if lanes.len() < 2 {
        return html! {};
    }
    html! {
        nav.lanes {
            "Lane: "
            @for l in lanes {
                a.active[*l == current] href=(queue_url(name, rest) + &layout::query(&[lane_pair(*l)])) { (l) }
                " "
            }
        }
    }
}
