//! What a client wants: nodes and categories, events and/or state frames, from its URL and
//! then from its subscribe messages.

use std::collections::BTreeSet;

use nodescope_proto::Category;
use serde::Deserialize;

/// What a client wants: nodes and categories (all when `None`), events and/or state frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub nodes: Option<BTreeSet<String>>,
    pub categories: Option<BTreeSet<Category>>,
    pub events: bool,
    pub state: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Subscribe {
    #[serde(rename = "type")]
    _type: String,
    nodes: Option<Vec<String>>,
    categories: Option<Vec<String>>,
    events: Option<bool>,
    state: Option<bool>,
}

fn categories(names: impl IntoIterator<Item = String>) -> Result<BTreeSet<Category>, String> {
    names
        .into_iter()
        .map(|name| name.parse::<Category>().map_err(|e| e.to_string()))
        .collect()
}

fn flag(value: &str, name: &str) -> Result<bool, String> {
    match value {
        "1" | "true" | "yes" | "" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        other => Err(format!("{name}={other:?}: use 1 or 0")),
    }
}

impl Filter {
    /// `nodes=a,b&categories=mempool,validation&events=1&state=0` (events on, state off by
    /// default; the page asks for state).
    pub fn from_query(query: &str) -> Result<Filter, String> {
        let mut filter = Filter {
            nodes: None,
            categories: None,
            events: true,
            state: false,
        };
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let list = || {
                value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            };
            match key.as_ref() {
                "nodes" | "node" => filter.nodes = Some(list().into_iter().collect()),
                "categories" | "category" => filter.categories = Some(categories(list())?),
                "events" => filter.events = flag(&value, "events")?,
                "state" => filter.state = flag(&value, "state")?,
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}: use nodes, categories, events, state"
                    ))
                }
            }
        }
        Ok(filter)
    }

    /// Applies a subscribe message; what it leaves out stays as it was.
    pub fn update(&mut self, text: &str) -> Result<(), String> {
        let subscribe: Subscribe = serde_json::from_str(text).map_err(|e| {
            format!("not a subscribe message ({e}): send {{\"type\":\"subscribe\",\"nodes\":[…],\"categories\":[…],\"events\":true,\"state\":false}}")
        })?;
        if subscribe._type != "subscribe" {
            return Err(format!(
                "unknown message type {:?}: only \"subscribe\"",
                subscribe._type
            ));
        }
        if let Some(nodes) = subscribe.nodes {
            self.nodes = (!nodes.is_empty()).then(|| nodes.into_iter().collect());
        }
        if let Some(names) = subscribe.categories {
            self.categories = if names.is_empty() {
                None
            } else {
                Some(categories(names)?)
            };
        }
        if let Some(events) = subscribe.events {
            self.events = events;
        }
        if let Some(state) = subscribe.state {
            self.state = state;
        }
        Ok(())
    }

    /// The categories whose events this client takes (none when it takes state only).
    pub fn event_categories(&self) -> Vec<Category> {
        match (&self.categories, self.events) {
            (_, false) => Vec::new(),
            (None, true) => Category::ALL.to_vec(),
            (Some(categories), true) => categories.iter().copied().collect(),
        }
    }

    pub fn wants_node(&self, node: &str) -> bool {
        self.nodes.as_ref().is_none_or(|nodes| nodes.contains(node))
    }

    pub fn wants(&self, node: &str, category: Category) -> bool {
        self.wants_node(node)
            && self
                .categories
                .as_ref()
                .is_none_or(|c| c.contains(&category))
    }

    /// The reply to a subscription: what the client now gets.
    pub fn describe(&self) -> String {
        serde_json::json!({
            "type": "subscribed",
            "nodes": self.nodes,
            "categories": self.categories.as_ref().map(|c| c.iter().map(|c| c.as_str()).collect::<Vec<_>>()),
            "events": self.events,
            "state": self.state,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_come_from_the_url_and_change_with_subscribe_messages() {
        let mut filter = Filter::from_query("nodes=a,b&categories=mempool,net.message").unwrap();
        assert_eq!(
            filter.nodes,
            Some(["a".to_string(), "b".to_string()].into())
        );
        assert!(filter.wants("a", Category::Mempool));
        assert!(!filter.wants("c", Category::Mempool));
        assert!(!filter.wants("a", Category::Validation));
        assert!(filter.events && !filter.state);

        filter
            .update(r#"{"type":"subscribe","categories":["validation"],"state":true}"#)
            .unwrap();
        assert!(filter.wants("b", Category::Validation));
        assert!(!filter.wants("b", Category::Mempool));
        assert!(filter.state);
        filter.update(r#"{"type":"subscribe","nodes":[]}"#).unwrap();
        assert!(filter.wants("z", Category::Validation));
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        assert!(Filter::from_query("categories=mempol")
            .unwrap_err()
            .contains("unknown category \"mempol\""));
        assert!(Filter::from_query("colour=red")
            .unwrap_err()
            .contains("unknown parameter \"colour\""));
        let mut filter = Filter::from_query("").unwrap();
        assert!(filter
            .update("{")
            .unwrap_err()
            .contains("not a subscribe message"));
        assert!(filter
            .update(r#"{"type":"unsubscribe"}"#)
            .unwrap_err()
            .contains("only \"subscribe\""));
    }
}
