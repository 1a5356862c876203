//! NumPy `.npy` files (format versions 1 to 3, <https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>) as record batches of one `vector` column.

use super::*;

/// A 2-D `float32`/`float64` `.npy` array as record batches of one `vector` column.
pub(super) struct NpyBatches {
    elements: NpyElements,
    pub(super) rows: u64,
    dimension: usize,
    next_row: u64,
    batch_rows: usize,
    schema: Arc<Schema>,
}

enum NpyElements {
    F32(npyz::NpyReader<f32, BufReader<File>>),
    F64(npyz::NpyReader<f64, BufReader<File>>),
}

impl NpyBatches {
    pub(super) fn open(path: &Path, file: File, batch_rows: usize) -> Result<NpyBatches> {
        let bad = |why: String| Error::invalid_input(format!("{}: {why}", path.display()));
        let npy = npyz::NpyFile::new(BufReader::new(file))
            .map_err(|e| bad(format!("not a readable .npy file: {e}")))?;
        let shape = npy.shape().to_vec();
        let [rows, dimension] = shape[..] else {
            return Err(bad(format!(
                "a .npy of vectors is a 2-D array (rows × dimension); this one has shape {shape:?}"
            )));
        };
        if npy.order() == npyz::Order::Fortran {
            return Err(bad(
                "the array is in Fortran (column-major) order; save it with \
                 numpy.save(f, numpy.ascontiguousarray(a))"
                    .into(),
            ));
        }
        let dimension = usize::try_from(dimension)
            .ok()
            .filter(|d| (1..=MAX_DIMENSION).contains(d))
            .ok_or_else(|| {
                bad(format!(
                    "vectors of dimension {dimension}: a collection holds 1 to {MAX_DIMENSION}"
                ))
            })?;
        let dtype = npy.dtype().descr();
        let elements = match npy.try_data::<f32>() {
            Ok(r) => NpyElements::F32(r),
            Err(npy) => match npy.try_data::<f64>() {
                Ok(r) => NpyElements::F64(r),
                Err(_) => {
                    return Err(bad(format!(
                        "the array's dtype is {dtype}; vectors are float32 ('<f4') or float64 ('<f8')"
                    )));
                }
            },
        };
        let schema = Arc::new(Schema::new(vec![Field::new(
            "vector",
            DataType::FixedSizeList(
                Arc::new(Field::new("item", DataType::Float32, false)),
                dimension as i32,
            ),
            false,
        )]));
        Ok(NpyBatches {
            elements,
            rows,
            dimension,
            next_row: 0,
            batch_rows,
            schema,
        })
    }
}

impl Iterator for NpyBatches {
    type Item = std::result::Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next_row >= self.rows {
            return None;
        }
        let rows = (self.rows - self.next_row).min(self.batch_rows as u64) as usize;
        let n = rows * self.dimension;
        let values: std::io::Result<Vec<f32>> = match &mut self.elements {
            NpyElements::F32(r) => r.by_ref().take(n).collect(),
            NpyElements::F64(r) => r.by_ref().take(n).map(|x| x.map(|x| x as f32)).collect(),
        };
        let values = match values {
            Ok(v) if v.len() == n => v,
            Err(e) if e.kind() != std::io::ErrorKind::UnexpectedEof => {
                return Some(Err(ArrowError::IoError(e.to_string(), e)));
            }
            _ => {
                return Some(Err(ArrowError::ParseError(format!(
                    "the .npy file ends early: its header promises {} rows of {} values",
                    self.rows, self.dimension
                ))));
            }
        };
        self.next_row += rows as u64;
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let vectors = FixedSizeListArray::try_new(
            item,
            self.dimension as i32,
            Arc::new(Float32Array::from(values)),
            None,
        );
        Some(vectors.and_then(|v| RecordBatch::try_new(self.schema.clone(), vec![Arc::new(v)])))
    }
}
