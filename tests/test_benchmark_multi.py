"""The benchmark's multi-valued workload (issue 35, item 8): its generated lists and id rows."""

import numpy as np
import pyarrow.compute as pc
import pyarrow.csv as arrow_csv

from experiments.benchmark import multi, workload
from experiments.benchmark.data import encode_step


def test_multi_rows_stay_in_their_field_and_pad_short_lists():
    schema = multi.with_multi_field(workload.criteo_schema(50_000), 20)
    (field,) = schema.multi_fields
    assert (
        schema.num_sparse == 39
        and schema.num_fields == 40
        and field.offset == schema.sparse_fields[-1].offset + (schema.sparse_fields[-1].vocab_size)
    )
    ids = multi.multi_rows(schema, 4000, seed=0)
    assert ids.shape == (4000, 20) and ids.dtype == np.int32
    local = ids - field.offset
    assert ((local >= 1) & (local < field.vocab_size)).all()  # tokens, or padding (1); never OOV (0)
    lengths = (local != field.padding_id).sum(1)
    assert lengths.min() == 0 and lengths.max() == 20
    padded_after_tokens = np.diff((local == field.padding_id).astype(int), axis=1) >= 0
    assert padded_after_tokens.all()


def test_the_genres_table_encodes_with_its_lists_counted(tmp_path):
    path = tmp_path / "genres.csv"
    multi.write_genres_csv(path, 3000, max_len=5)
    table = arrow_csv.read_csv(path, convert_options=arrow_csv.ConvertOptions(strings_can_be_null=True))
    lengths = pc.list_value_length(pc.split_pattern(table["genres"], "|")).fill_null(0).to_numpy()
    result = encode_step(path, tmp_path / "cache", lambda p, c: multi.datamodule(p, c, max_len=5))
    stats = result["multi_valued"]["genres"]
    assert result["rows"] == 3000 and lengths.max() == 10
    assert stats["truncated"] == int((lengths > 5).sum()) and stats["max"] == 10
    assert stats["mean"] == round(float(lengths.mean()), 4)
