from django.core.management.base import BaseCommand, CommandError

from tokens.services import OTHER_SECRET_STORES, credential_rotate_keys


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the primary (first) key of FIELD_ENCRYPTION_KEYS. "
        "Idempotent and resumable: rows already on the primary key are skipped. Remove an old "
        "key only after a run that reports failed=0."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500, help="rows per transaction")

    def handle(self, *args, batch_size: int, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        result = credential_rotate_keys(batch_size=batch_size)
        self.stdout.write(
            f"rotated={result.rotated} failed={result.failed} skipped={result.skipped}"
        )
        others_failed = 0
        for name, rotate in OTHER_SECRET_STORES.items():  # e.g. the alert channels' secrets
            rotated, failed = rotate()
            others_failed += failed
            self.stdout.write(f"{name}: rotated={rotated} failed={failed}")
        if result.failed or others_failed:
            raise CommandError(
                f"{result.failed + others_failed} secret(s) did not decrypt with any configured "
                "key; keep the old keys until they are replaced or forgotten."
            )
