//! ADT: from HL7 v2 admission, discharge and transfer messages to the
//! canonical model's Patient, Admission, WardStay, Ward, Site and Bed.

pub mod canonical;
pub mod census;
pub mod event;
pub mod extract;
