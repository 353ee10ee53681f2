/** The scheduler part of flows (issue 5): fires the cron triggers of active flows. */
export { CronScheduler, type CronEngine, type CronMessage, type CronSchedulerOptions } from './cron-scheduler.js';
