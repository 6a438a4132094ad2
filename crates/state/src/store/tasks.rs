//! Tasks: the controller's units of work for agents.

use super::rows::{self, TASK_COLUMNS, TaskRow, to_json};
use crate::db::{Sql, Tx};
use crate::error::{Error, Result};
use crate::model::{NewTask, Task, TaskUpdate, TaskUpdateOutcome};
use crate::status::TaskType;
use crate::store::Store;
use crate::time_util::{now, to_ns};

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
    /// * An update to an inactive task (complete, or deactivated by the
    ///   controller) changes nothing: [`TaskUpdateOutcome::Inactive`]. So a
    ///   retried final update is harmless.
    /// * An update older than the one recorded (by the agent's timestamp)
    ///   changes nothing: [`TaskUpdateOutcome::Stale`].
    /// * Otherwise stage, results, completeness and timestamp are recorded; a
    ///   complete update also makes the task inactive and sets `finished_at`.
    pub async fn update_task(
        &self,
        backend: &str,
        update: &TaskUpdate,
    ) -> Result<TaskUpdateOutcome> {
        let mut tx = self.pool.begin().await?;
        let now_ns = to_ns(now());
        let n = tx
            .execute(
                Sql::new(
                    "UPDATE tasks SET agent_stage = $3, agent_results = $4, \
                     agent_complete = $5, agent_timestamp_ns = $6, \
                     active = NOT $5, finished_at = CASE WHEN $5 THEN $7 ELSE NULL END \
                     WHERE id = $1 AND backend = $2 AND active \
                     AND (agent_timestamp_ns IS NULL OR agent_timestamp_ns <= $6)",
                )
                .bind(&update.task_id)
                .bind(backend)
                .bind(&update.stage)
                .bind(to_json(&update.results))
                .bind(update.complete)
                .bind(update.timestamp_ns)
                .bind(now_ns),
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
