import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `sdn_check(ok, what)`: true, or an error (SQLSTATE P0001, message
 * "sdn_check failed: <what>") that aborts the statement. The directory's
 * writer commits a batch of endpoint creations in one statement that presumes
 * two things it checks with it: every row went in, and the change-log counter
 * was still the value this process last wrote (no other directory process
 * wrote in between). When either is false nothing is committed and the batch
 * runs again the ordinary way (see apps/directory/src/db/database.ts).
 */
export class WriterCheck1733100000000 implements MigrationInterface {
  name = 'WriterCheck1733100000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE FUNCTION sdn_check(ok boolean, what text) RETURNS boolean LANGUAGE plpgsql AS $$
      BEGIN
        IF ok IS NOT TRUE THEN
          RAISE EXCEPTION 'sdn_check failed: %', what;
        END IF;
        RETURN true;
      END
      $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP FUNCTION sdn_check(boolean, text)');
  }
}
