//! Tasks: the controller's units of work for agents.

use super::rows::{self, TASK_COLUMNS, TaskRow, to_json};
use crate::db::{Sql, Tx};
use crate::error::{Error, Result};
use crate::model::{NewTask, Task, TaskUpdate, TaskUpdateOutcome};
use crate::status::TaskType;
use crate::store::Store;
use crate::time_util::{now, to_ns};

/// How far an agent's clock may be from the controller's and still be
/// believed (see [`agent_update_time`]).
///
/// Agents' clocks say more precisely when a stage was reached than the
/// controller's receive time (a report may wait in a retry queue), so they
/// set the job's transition times, but only within this bound: an agent
/// with a clock a year ahead must not freeze its task (every later update
/// looking older), nor push a job's times into the future.
pub const MAX_AGENT_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(60);

fn skew_ns() -> i64 {
    i64::try_from(MAX_AGENT_CLOCK_SKEW.as_nanos()).unwrap_or(i64::MAX)
}

/// The time an agent's update is recorded at: the agent's `timestamp_ns`
/// clamped to `received_ns` ± [`MAX_AGENT_CLOCK_SKEW`] (`received_ns` is the
/// store's clock when the update arrived).
///
/// Why not the agent's clock alone: it is not the server's to control; a
/// far-future value would make every later update stale and push the job's
/// times forward for good. Why not the receive time alone: an agent that
/// retries a delayed report would have it recorded as newer than reports
/// sent after it. Within the bound, updates are ordered by the agent's
/// clock; outside it, by arrival (an agent whose clock is far off has all
/// its updates clamped to the edge of the window, which moves with arrival
/// time). Either way an out-of-order *progress* report can be held back by
/// at most twice the bound, and a *final* report is never held back
/// ([`Store::update_task`]).
pub fn agent_update_time(timestamp_ns: i64, received_ns: i64) -> i64 {
    let skew = skew_ns();
    timestamp_ns.clamp(
        received_ns.saturating_sub(skew),
        received_ns.saturating_add(skew),
    )
}

pub(crate) async fn insert_task(tx: &mut Tx, task: &NewTask, now_ns: i64) -> Result<()> {
    if task.id.is_empty() || task.backend.is_empty() {
        return Err(Error::InvalidInput(
            "a task needs an id and a backend".into(),
        ));
    }
    tx.execute(
        Sql::new(format!(
            "INSERT INTO tasks ({TASK_COLUMNS}) \
             VALUES ($1, $2, $3, $4, TRUE, NULL, FALSE, NULL, NULL, $5, NULL)"
        ))
        .bind(&task.id)
        .bind(&task.backend)
        .bind(task.task_type.as_str())
        .bind(to_json(&task.definition))
        .bind(now_ns),
    )
    .await
    .map_err(|e| e.on_insert("task", &task.id))?;
    Ok(())
}

pub(crate) async fn deactivate_task(tx: &mut Tx, task_id: &str, now_ns: i64) -> Result<bool> {
    let n = tx
        .execute(
            Sql::new(
                "UPDATE tasks SET active = FALSE, finished_at = COALESCE(finished_at, $2) \
                 WHERE id = $1",
            )
            .bind(task_id)
            .bind(now_ns),
        )
        .await?;
    Ok(n > 0)
}

impl Store {
    /// Inserts an active task. [`Error::AlreadyExists`] if the id is taken.
    pub async fn insert_task(&self, task: &NewTask) -> Result<Task> {
        let mut tx = self.pool.begin().await?;
        let now = now();
        insert_task(&mut tx, task, to_ns(now)).await?;
        tx.commit().await?;
        Ok(Task {
            id: task.id.clone(),
            backend: task.backend.clone(),
            task_type: task.task_type,
            definition: task.definition.clone(),
            active: true,
            agent_stage: None,
            agent_complete: false,
            agent_results: None,
            agent_timestamp_ns: None,
            created_at: crate::time_util::from_ns(to_ns(now)),
            finished_at: None,
        })
    }

    /// One task.
    pub async fn get_task(&self, id: &str) -> Result<Option<Task>> {
        let mut conn = self.pool.acquire().await?;
        let row: Option<TaskRow> = conn
            .fetch_optional(
                Sql::new(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1")).bind(id),
            )
            .await?;
        row.map(Task::try_from).transpose()
    }

    /// The active tasks of `backend`, oldest first: what its agent is given.
    pub async fn active_tasks(&self, backend: &str) -> Result<Vec<Task>> {
        let mut conn = self.pool.acquire().await?;
        rows::tasks(
            conn.fetch_all(
                Sql::new(format!(
                    "SELECT {TASK_COLUMNS} FROM tasks WHERE backend = $1 AND active \
                     ORDER BY created_at, id"
                ))
                .bind(backend),
            )
            .await?,
        )
    }

    /// A job's tasks (of `task_type`, or all), in id order, which is creation
    /// order for each type.
    pub async fn tasks_for_job(
        &self,
        job_id: &str,
        task_type: Option<TaskType>,
    ) -> Result<Vec<Task>> {
        let mut sql = Sql::new(format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE id LIKE $1{} ORDER BY id",
            if task_type.is_some() {
                " AND task_type = $2"
            } else {
                ""
            }
        ))
        .bind(format!("{job_id}-%"));
        if let Some(t) = task_type {
            sql = sql.bind(t.as_str());
        }
        let mut conn = self.pool.acquire().await?;
        rows::tasks(conn.fetch_all(sql).await?)
    }

    /// The job's latest RUNJOB task ("the" task of a running job).
    pub async fn latest_runjob_task(&self, job_id: &str) -> Result<Option<Task>> {
        Ok(self
            .tasks_for_job(job_id, Some(TaskType::RunJob))
            .await?
            .pop())
    }

    /// Marks a task inactive (e.g. when the controller cancels it); returns
    /// whether it exists.
    pub async fn deactivate_task(&self, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let found = deactivate_task(&mut tx, id, to_ns(now())).await?;
        tx.commit().await?;
        Ok(found)
    }

    /// Records an agent's report on one of **its own backend's** tasks.
    ///
    /// * A task that does not exist or belongs to another backend gives
    ///   [`Error::NotFound`] (the two are not distinguished, so an agent
    ///   learns nothing about other backends).
    /// * A negative `timestamp_ns` is [`Error::InvalidInput`].
    /// * An update to an inactive task (complete, or deactivated by the
    ///   controller) changes nothing: [`TaskUpdateOutcome::Inactive`]. So a
    ///   retried final update is harmless.
    /// * The update is recorded at [`agent_update_time`]: the agent's clock,
    ///   bounded to within [`MAX_AGENT_CLOCK_SKEW`] of this store's clock
    ///   when the update arrives. A progress update (not `complete`) older
    ///   than the one recorded changes nothing: [`TaskUpdateOutcome::Stale`]
    ///   (a recorded time beyond the skew bound, left by an older warden, is
    ///   not trusted and never makes an update stale).
    /// * A final update (`complete`) is applied whatever its time, exactly
    ///   once: it makes the task inactive (setting `finished_at`), so a repeat
    ///   is `Inactive`. No agent clock can make a task un-completable.
    /// * Otherwise stage, results, completeness and time are recorded; the
    ///   recorded time never goes backwards.
    pub async fn update_task(
        &self,
        backend: &str,
        update: &TaskUpdate,
    ) -> Result<TaskUpdateOutcome> {
        if update.timestamp_ns < 0 {
            return Err(Error::InvalidInput(format!(
                "timestamp_ns is negative ({}): it must be nanoseconds since the Unix epoch",
                update.timestamp_ns
            )));
        }
        let mut tx = self.pool.begin().await?;
        let now_ns = to_ns(now());
        let at_ns = agent_update_time(update.timestamp_ns, now_ns);
        let trusted_until = now_ns.saturating_add(skew_ns());
        // A final update skips the staleness check: `$5` is bound as a
        // boolean on both engines.
        let n = tx
            .execute(
                Sql::new(
                    "UPDATE tasks SET agent_stage = $3, agent_results = $4, \
                     agent_complete = $5, \
                     agent_timestamp_ns = CASE \
                       WHEN agent_timestamp_ns IS NULL OR agent_timestamp_ns < $6 \
                         OR agent_timestamp_ns > $8 THEN $6 \
                       ELSE agent_timestamp_ns END, \
                     active = NOT $5, finished_at = CASE WHEN $5 THEN $7 ELSE NULL END \
                     WHERE id = $1 AND backend = $2 AND active \
                     AND ($5 OR agent_timestamp_ns IS NULL OR agent_timestamp_ns <= $6 \
                          OR agent_timestamp_ns > $8)",
                )
                .bind(&update.task_id)
                .bind(backend)
                .bind(&update.stage)
                .bind(to_json(&update.results))
                .bind(update.complete)
                .bind(at_ns)
                .bind(now_ns)
                .bind(trusted_until),
            )
            .await?;
        if n == 1 {
            tx.commit().await?;
            return Ok(TaskUpdateOutcome::Applied);
        }
        let state: Option<(bool,)> = tx
            .fetch_optional(
                Sql::new("SELECT active FROM tasks WHERE id = $1 AND backend = $2")
                    .bind(&update.task_id)
                    .bind(backend),
            )
            .await?;
        match state {
            None => Err(Error::not_found("task", &update.task_id)),
            Some((false,)) => Ok(TaskUpdateOutcome::Inactive),
            Some((true,)) => Ok(TaskUpdateOutcome::Stale),
        }
    }
}
