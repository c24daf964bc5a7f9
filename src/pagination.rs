//! The list envelope of SPEC §2: `skip`/`limit` bounds and `{data, total, skip, limit, has_more}`.

use poem_openapi::{
    Object,
    types::{ParseFromJSON, ToJSON},
};

use crate::error::{ApiError, ApiResult};

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub skip: i64,
    pub limit: i64,
}

impl Page {
    pub fn new(skip: Option<i64>, limit: Option<i64>) -> ApiResult<Page> {
        let skip = skip.unwrap_or(0);
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if skip < 0 {
            return Err(ApiError::bad_request("skip must be greater than or equal to 0"));
        }
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_LIMIT}")));
        }
        Ok(Page { skip, limit })
    }

    pub fn wrap<T: ParseFromJSON + ToJSON>(self, data: Vec<T>, total: i64) -> ListResponse<T> {
        ListResponse {
            has_more: self.skip + (data.len() as i64) < total,
            data,
            total,
            skip: self.skip,
            limit: self.limit,
        }
    }
}

/// One page of a list.
#[derive(Object, Debug)]
pub struct ListResponse<T: ParseFromJSON + ToJSON> {
    pub data: Vec<T>,
    /// How many rows match the filters, over all pages.
    pub total: i64,
    pub skip: i64,
    pub limit: i64,
    /// `skip + len(data) < total`
    pub has_more: bool,
}

/// Trims a `search` parameter; an empty one means no search.
pub fn search_term(search: Option<String>) -> Option<String> {
    search.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert!(Page::new(Some(-1), None).is_err());
        assert!(Page::new(None, Some(0)).is_err());
        assert!(Page::new(None, Some(101)).is_err());
        let p = Page::new(None, None).unwrap();
        assert_eq!((p.skip, p.limit), (0, 20));
        let l = Page { skip: 10, limit: 5 }.wrap(vec![1i64, 2, 3, 4, 5], 15);
        assert!(!l.has_more);
        let l = Page { skip: 0, limit: 5 }.wrap(vec![1i64, 2, 3, 4, 5], 15);
        assert!(l.has_more);
    }
}
