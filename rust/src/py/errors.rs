//! The single conversion of `CoreError` into the Python exceptions of `ferrotile.errors`.

use pyo3::exceptions::PyValueError;
use pyo3::PyErr;

use crate::error::CoreError;

pyo3::import_exception!(ferrotile.errors, HubError);
pyo3::import_exception!(ferrotile.errors, EnvelopeError);
pyo3::import_exception!(ferrotile.errors, StreamUnavailable);
pyo3::import_exception!(ferrotile.errors, EntryIdError);
pyo3::import_exception!(ferrotile.errors, ServeError);
pyo3::import_exception!(ferrotile.errors, StorageError);

impl From<CoreError> for PyErr {
    fn from(err: CoreError) -> PyErr {
        let message = err.to_string();
        match err {
            CoreError::Envelope(_) | CoreError::UnknownEnvelope(_) => EnvelopeError::new_err(message),
            CoreError::ShutDown => HubError::new_err(message),
            CoreError::Config(_) => PyValueError::new_err(message),
            CoreError::Unavailable(_) => StreamUnavailable::new_err(message),
            CoreError::EntryId(_) => EntryIdError::new_err(message),
            CoreError::Listen(_) => ServeError::new_err(message),
            CoreError::StoreUnsupported(_) | CoreError::Storage(_) | CoreError::StorageFull(_) => {
                StorageError::new_err(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use pyo3::prelude::*;

    use super::*;

    #[test]
    fn maps_each_variant() {
        Python::initialize();
        Python::attach(|py| {
            let python_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../python");
            py.import("sys").unwrap().getattr("path").unwrap().call_method1("insert", (0, python_dir)).unwrap();
            let err = PyErr::from(CoreError::envelope("bad"));
            assert!(err.is_instance_of::<EnvelopeError>(py));
            assert!(err.is_instance_of::<PyValueError>(py));
            assert!(err.is_instance_of::<HubError>(py));
            assert!(PyErr::from(CoreError::UnknownEnvelope("x".into())).is_instance_of::<EnvelopeError>(py));
            let err = PyErr::from(CoreError::ShutDown);
            assert!(err.is_instance_of::<HubError>(py) && !err.is_instance_of::<EnvelopeError>(py));
            assert_eq!(err.value(py).to_string(), "hub is shut down");
            let err = PyErr::from(CoreError::Config("x".into()));
            assert!(err.is_instance_of::<PyValueError>(py) && !err.is_instance_of::<HubError>(py));
            let err = PyErr::from(CoreError::Unavailable("down".into()));
            assert!(err.is_instance_of::<StreamUnavailable>(py) && err.is_instance_of::<HubError>(py));
            let err = PyErr::from(CoreError::EntryId("1-1 is not greater".into()));
            assert!(err.is_instance_of::<EntryIdError>(py) && err.is_instance_of::<PyValueError>(py));
            assert!(err.is_instance_of::<HubError>(py));
            let err = PyErr::from(CoreError::Listen("Port 1 on 127.0.0.1 is already in use".into()));
            assert!(err.is_instance_of::<ServeError>(py) && !err.is_instance_of::<HubError>(py));
        });
    }
}
