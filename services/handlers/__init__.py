"""What users write against: the App, the job context, declared schedules."""
