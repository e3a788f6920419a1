//! The order tables are written in, and which link fields wait for the second pass.
//!
//! A link is written in the create request of the record that holds it when the linked
//! record already exists, so the records pass writes a table after the tables its created
//! link sides point to (Airtable fills the inverse side). Only what a cycle forces waits for
//! the links pass: self-links, and, in a ring of tables linking each other through different
//! pairs, the links of the table that closes the ring. Pure functions of the plan, so a
//! resumed run finds the same order.

use std::collections::HashSet;

use super::plan::Plan;

/// The order of the records pass and the link fields it leaves for the links pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WriteOrder {
    /// Original table ids, in the order their records are created.
    pub(super) tables: Vec<String>,
    /// Original ids of the created link sides written by the links pass.
    pub(super) deferred: HashSet<String>,
}

impl WriteOrder {
    /// Whether the created link side `field` is written in the create request.
    pub(super) fn in_create(&self, field: &str) -> bool {
        !self.deferred.contains(field)
    }
}

/// Orders the plan's tables so that every created link side points to a table written
/// before its own; a table that cannot wait (a cycle) goes next in plan order, and its links
/// to tables not yet written are deferred.
pub(super) fn write_order(plan: &Plan) -> WriteOrder {
    let mut deferred: HashSet<String> = plan
        .links
        .iter()
        .filter(|l| l.table == l.linked_table)
        .map(|l| l.field.clone())
        .collect();
    let planned: HashSet<&str> = plan.tables.iter().map(|t| t.source_id.as_str()).collect();
    let mut written: Vec<String> = Vec::new();
    let mut done: HashSet<&str> = HashSet::new();
    while written.len() < plan.tables.len() {
        let waiting_on = |table: &str, done: &HashSet<&str>| -> Vec<String> {
            plan.links
                .iter()
                .filter(|l| l.table == table && l.linked_table != table)
                .filter(|l| planned.contains(l.linked_table.as_str()))
                .filter(|l| !done.contains(l.linked_table.as_str()))
                .map(|l| l.field.clone())
                .collect()
        };
        let pending = plan
            .tables
            .iter()
            .filter(|t| !done.contains(t.source_id.as_str()));
        let ready = pending
            .clone()
            .find(|t| waiting_on(&t.source_id, &done).is_empty());
        let next = match ready {
            Some(table) => table,
            None => {
                // A cycle: the first table waiting goes now, its waiting links later.
                let table = pending.clone().next().expect("a table is left");
                deferred.extend(waiting_on(&table.source_id, &done));
                table
            }
        };
        done.insert(&next.source_id);
        written.push(next.source_id.clone());
    }
    WriteOrder {
        tables: written,
        deferred,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::plan::{LinkPlan, TablePlan};

    fn table(id: &str) -> TablePlan {
        TablePlan {
            source_id: id.into(),
            source_name: id.into(),
            name: id.into(),
            description: None,
            fields: Vec::new(),
            source_id_field: "src".into(),
        }
    }

    fn link(field: &str, table: &str, linked: &str) -> LinkPlan {
        LinkPlan {
            table: table.into(),
            field: field.into(),
            name: field.into(),
            description: None,
            linked_table: linked.into(),
            inverse: None,
        }
    }

    fn plan(tables: &[&str], links: Vec<LinkPlan>) -> Plan {
        Plan {
            tables: tables.iter().map(|t| table(t)).collect(),
            links,
            losses: Vec::new(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn linked_tables_come_first_and_only_cycles_are_deferred() {
        // A chain a → b → c, written c, b, a, with nothing deferred.
        let chain = plan(
            &["a", "b", "c"],
            vec![link("ab", "a", "b"), link("bc", "b", "c")],
        );
        let order = write_order(&chain);
        assert_eq!(order.tables, ["c", "b", "a"]);
        assert!(order.deferred.is_empty());

        // A self-link waits; a ring a → b → a through two pairs defers a's link only.
        let ring = plan(
            &["a", "b", "x"],
            vec![
                link("self", "x", "x"),
                link("ab", "a", "b"),
                link("ba", "b", "a"),
            ],
        );
        let order = write_order(&ring);
        assert_eq!(order.tables, ["x", "a", "b"]);
        assert_eq!(
            order.deferred,
            HashSet::from(["self".to_owned(), "ab".to_owned()])
        );
        assert!(order.in_create("ba"));

        // A link to a table outside the plan does not hold anything back.
        let outside = plan(&["a"], vec![link("ao", "a", "other")]);
        assert_eq!(write_order(&outside).tables, ["a"]);
    }
}
