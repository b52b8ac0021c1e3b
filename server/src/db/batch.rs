//! Users' policy inputs read from PostgreSQL many at a time.
//!
//! At a million users nearly every effective-policy read misses the cache of policy
//! inputs (it holds 32,768 of them, bounded by memory) and costs a statement of its own:
//! a round trip in which PostgreSQL spends about 50 µs on bookkeeping around a lookup
//! of two index entries, and the server as much again on the protocol. Here the reads
//! that arrive while a statement is out are gathered and answered by the next one, one
//! statement for all of them: a lone read still goes out at once, and under load each
//! statement carries as many reads as arrived during the one before it (BENCHMARKS.md,
//! "Policy inputs read together on PostgreSQL").
//!
//! The shared statement selects what a read alone selects, through the same joins, for
//! several ids (one placeholder each, [`SUBJECTS_SQL`]), in a transaction of its own; it is sent after every read it answers
//! was asked, so each gets what a read alone, sent at that moment, would have got, and
//! a change committed before a read was asked is always seen by it.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::FromRow;
use tokio::sync::{mpsc, oneshot};

use super::groups::{RULE_COLUMNS, RULE_JOINS, Subject, SubjectRuleRow, fold_subject};
use super::hot;

/// At most this many ids in one statement, a power of two: a statement never holds a
/// connection for long.
const MOST_IDS: usize = 256;

/// The statement for up to `2^k` ids, for each `k` up to `log2(MOST_IDS)`: `u.id IN ($1,
/// ..., $n)`, the places past the ids asked filled with the first id again. One
/// placeholder per id, not one array parameter: PostgreSQL planned the statement with an
/// array anew for every call (the array's length, known only then, made a custom plan
/// look cheaper than the generic one), 170 µs of planning for 30 µs of execution at 20 k
/// users (`pg_stat_statements`, BENCHMARKS.md, "A verification in one statement on the
/// node that opened it"). With one placeholder per id the generic plan's estimate is
/// the custom plan's, so each connection keeps the generic one; powers of two bound the
/// texts to nine.
static SUBJECTS_SQL: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    (0..=MOST_IDS.trailing_zeros())
        .map(|k| {
            let places: Vec<String> = (1..=1usize << k).map(|n| format!("${n}")).collect();
            format!(
                "SELECT u.id AS subject_id, u.tenant_id, u.two_factor_enabled, {RULE_COLUMNS} FROM users u \
                 {RULE_JOINS} WHERE u.id IN ({})",
                places.join(", ")
            )
        })
        .collect()
});

/// [`SUBJECTS_SQL`]'s statement for `n` ids (1 to [`MOST_IDS`]) and how many places it
/// has.
fn subjects_sql(n: usize) -> (&'static str, usize) {
    let places = n.max(1).next_power_of_two().min(MOST_IDS);
    (SUBJECTS_SQL[places.trailing_zeros() as usize].as_str(), places)
}

#[derive(FromRow)]
struct Row {
    subject_id: String,
    #[sqlx(flatten)]
    row: SubjectRuleRow,
}

type Answer = anyhow::Result<Option<Subject>>;

struct Read {
    user_id: String,
    answer: oneshot::Sender<Answer>,
}

/// The queue of reads waiting for the next statement, and the task that sends them.
#[derive(Debug, Clone)]
pub struct SubjectReads {
    queue: mpsc::UnboundedSender<Read>,
}

impl SubjectReads {
    /// Starts the task that sends the statements; it ends when the last handle is
    /// dropped.
    pub fn start(pool: Arc<hot::Pool>) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(serve(pool, waiting));
        Self { queue }
    }

    /// `user_id`'s policy inputs, or `None` when there is no such user; `Err(())` when
    /// the task has ended, for the caller to read it alone.
    pub async fn read(&self, user_id: &str) -> Result<Answer, ()> {
        let (answer, answered) = oneshot::channel();
        if self.queue.send(Read { user_id: user_id.to_owned(), answer }).is_err() {
            return Err(());
        }
        // The task answers every read it takes; a dropped sender means it has ended.
        answered.await.map_err(|_| ())
    }
}

/// One statement out at a time: reads that arrive meanwhile wait for it and go out
/// together in the next. Two at once left each carrying fewer reads, and PostgreSQL
/// spent twice as long per read (BENCHMARKS.md).
async fn serve(pool: Arc<hot::Pool>, mut waiting: mpsc::UnboundedReceiver<Read>) {
    let mut reads = Vec::with_capacity(MOST_IDS);
    while waiting.recv_many(&mut reads, MOST_IDS).await > 0 {
        answer(&pool, std::mem::take(&mut reads)).await;
    }
}

async fn answer(pool: &hot::Pool, reads: Vec<Read>) {
    let mut asked: HashMap<String, Vec<oneshot::Sender<Answer>>> = HashMap::with_capacity(reads.len());
    for Read { user_id, answer } in reads {
        // A read whose request went away needs no answer.
        if !answer.is_closed() {
            asked.entry(user_id).or_default().push(answer);
        }
    }
    if asked.is_empty() {
        return;
    }
    crate::metrics::postgres_subject_statement(asked.values().map(|answers| answers.len() as u64).sum());
    let ids: Vec<&str> = asked.keys().map(String::as_str).collect();
    match statement(pool, &ids).await {
        Ok(rows) => {
            let mut found: HashMap<String, Vec<SubjectRuleRow>> = HashMap::with_capacity(asked.len());
            for Row { subject_id, row } in rows {
                found.entry(subject_id).or_default().push(row);
            }
            for (user_id, answers) in asked {
                let folded = fold_subject(found.remove(&user_id).unwrap_or_default());
                for answer in answers {
                    let copy = match &folded {
                        Ok(subject) => Ok(subject.clone()),
                        Err(e) => Err(anyhow::anyhow!("{e:#}")),
                    };
                    let _ = answer.send(copy);
                }
            }
        }
        Err(e) => {
            for answer in asked.into_values().flatten() {
                let _ = answer.send(Err(copy_error(&e).into()));
            }
        }
    }
}

/// Reads the policy inputs of `ids` (1 to [`MOST_IDS`] of them) in one statement.
async fn statement(pool: &hot::Pool, ids: &[&str]) -> Result<Vec<Row>, sqlx::Error> {
    let (sql, places) = subjects_sql(ids.len());
    let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
    for n in 0..places {
        query = query.bind(ids.get(n).or(ids.first()).copied().unwrap_or_default());
    }
    let mut lent = pool.get().await?;
    let conn = lent.conn()?;
    let result = query.fetch_all(conn).await;
    lent.settle(result)
}

/// The statement's error, for each read it was to answer: an outage stays an outage (a
/// 503, `crate::error`), anything else a fault, each with the original's message.
fn copy_error(e: &sqlx::Error) -> sqlx::Error {
    if crate::error::database_unavailable(e) {
        sqlx::Error::Io(std::io::Error::other(e.to_string()))
    } else {
        sqlx::Error::Protocol(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_count_of_ids_has_a_statement_with_room_for_them() {
        for n in 1..=MOST_IDS {
            let (sql, places) = subjects_sql(n);
            assert!(places >= n && places < 2 * n, "{n} ids in {places} places");
            assert!(sql.contains(&format!("${places})")), "{n}: {sql}");
            assert!(!sql.contains(&format!("${}", places + 1)), "{n}: {sql}");
        }
        assert_eq!(SUBJECTS_SQL.len(), 9);
    }
}
